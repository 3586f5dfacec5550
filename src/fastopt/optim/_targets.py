"""What an optimizer updates: a ParamSet, or a list, tuple or dict of arrays.

``ParamTargets`` validates the parameters once, keeps 1-D views of them for
the kernels, and turns the ``grads`` given to each step into matching 1-D
views after checking them, so the kernels only ever see arrays they can
update in place.
"""
from bisect import bisect_right
from collections.abc import Mapping

from fastopt._validation import byte_span, check_disjoint, check_grad, check_param, check_writeable
from fastopt.paramset import ParamSet


class ParamTargets:
    """The parameters an optimizer updates, as 1-D views in a fixed order.

    Attributes
    ----------
    names : list of str
        How each parameter is named in error messages (``params[0]``,
        ``params['W1']`` or ``ParamSet.data``).
    flats : list of numpy.ndarray
        1-D views of the parameters, in order.
    paramset : ParamSet or None
    """

    def __init__(self, params):
        self.paramset = params if isinstance(params, ParamSet) else None
        self.keys = None
        if self.paramset is not None:
            self.names, arrays = ["ParamSet.data"], [params.data]
        elif isinstance(params, Mapping):
            self.keys = list(params)
            self.names = [f"params[{k!r}]" for k in self.keys]
            arrays = [params[k] for k in self.keys]
        elif isinstance(params, (list, tuple)):
            self.names = [f"params[{i}]" for i in range(len(params))]
            arrays = list(params)
        else:
            raise TypeError(
                "params must be a ParamSet or a list, tuple or dict of numpy arrays, "
                f"got {type(params).__name__}"
            )
        if not arrays:
            raise ValueError("optimizer got an empty parameter list")
        for array, name in zip(arrays, self.names):
            check_param(array, name)
        check_disjoint(arrays, self.names, "parameters")
        self.arrays = arrays
        self.flats = [a.reshape(-1) for a in arrays]
        spans = sorted((byte_span(a) + (i,) for i, a in enumerate(arrays) if a.size), key=lambda s: s[0])
        self._span_starts = [s[0] for s in spans]
        self._spans = spans

    def gradients(self, grads):
        """Validate ``grads`` for one step; return a 1-D view (or None: skip) per parameter."""
        for array, name in zip(self.arrays, self.names):
            check_writeable(array, name)
        if self.paramset is not None:
            given = [self.paramset.grad if grads is None else grads]
            grad_names = ["ParamSet.grad" if grads is None else "grads"]
        elif grads is None:
            raise TypeError("step() needs grads when the optimizer was built on arrays rather than a ParamSet")
        elif self.keys is not None:
            given, grad_names = self._from_mapping(grads)
        else:
            given, grad_names = self._from_sequence(grads)

        flats = []
        for i, (grad, gname) in enumerate(zip(given, grad_names)):
            if grad is None:
                flats.append(None)
                continue
            check_grad(grad, self.arrays[i], gname, self.names[i])
            self._check_not_a_param(grad, gname)
            flats.append(grad.reshape(-1))
        return flats

    def _from_mapping(self, grads):
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads must be a dict like params, got {type(grads).__name__}")
        missing = [k for k in self.keys if k not in grads]
        extra = [k for k in grads if k not in self.keys]
        if missing or extra:
            raise ValueError(f"grads keys must match params: missing {missing}, unexpected {extra}")
        return [grads[k] for k in self.keys], [f"grads[{k!r}]" for k in self.keys]

    def _from_sequence(self, grads):
        if not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list or tuple like params, got {type(grads).__name__}")
        if len(grads) != len(self.arrays):
            raise ValueError(f"grads has {len(grads)} arrays but params has {len(self.arrays)}")
        return list(grads), [f"grads[{i}]" for i in range(len(grads))]

    def _check_not_a_param(self, grad, gname):
        """A gradient must not overlap any parameter (the kernel would read what it writes)."""
        if not grad.size:
            return
        start, end = byte_span(grad)
        k = bisect_right(self._span_starts, end - 1) - 1  # last param starting before the grad ends
        if k >= 0 and self._spans[k][1] > start:
            raise ValueError(f"{gname} shares memory with {self.names[self._spans[k][2]]}; "
                             "a gradient must be a separate array")

