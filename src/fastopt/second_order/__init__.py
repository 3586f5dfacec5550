"""Second-order minimizers behind a ``scipy.optimize.minimize``-style call.

``fastopt.minimize(fun, x0, method=...)`` with ``"L-BFGS"`` (default),
``"BFGS"``, ``"Newton"`` and ``"Newton-CG"``; results are SciPy
``OptimizeResult`` objects.  The vector work of the quasi-Newton methods
runs in nogil, OpenMP kernels (``_vectors``), Newton's Cholesky in SciPy's
LAPACK without the GIL (``_cholesky``), and every method shares one
Moré–Thuente line search (``_linesearch``).
"""
from fastopt.second_order.lbfgs import LbfgsInverseHessian
from fastopt.second_order.minimize import METHODS, minimize

__all__ = ["minimize", "METHODS", "LbfgsInverseHessian"]
