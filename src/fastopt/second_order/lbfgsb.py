"""L-BFGS-B: L-BFGS within bounds (Byrd, Lu, Nocedal & Zhu, 1995).  Placeholder until the bounded driver lands."""


def parse_bounds(bounds, n):
    """(lower, upper) float64 arrays of shape (n,), or None when there are no bounds or all are infinite."""
    if bounds is None:
        return None
    raise NotImplementedError("bounds: not yet")


def minimize_lbfgsb(objective, x0, box, *, callback, **options):
    raise NotImplementedError("bounds: not yet")
