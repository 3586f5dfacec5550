"""Checks on user arguments, done in Python before any kernel runs.

Arrays
    Kernels update arrays in place, so fastopt never converts or copies a
    parameter or gradient behind the user's back: an array that is not
    exactly what a kernel needs is refused with an error naming it
    (:func:`check_float_array`, :func:`check_param`, :func:`check_grad`,
    :func:`check_disjoint`).  DLPack producers (torch CPU tensors, ...) are
    viewed as NumPy arrays first, zero-copy (:func:`as_array`), and then
    checked the same way.  Parameters and gradients may be float32,
    float64 or bfloat16; the float-only code (batch norm, clipping, the
    minimizers, distributed buffers) takes :data:`FLOAT_DTYPES` and refuses
    bfloat16.  These return the array checked, except
    :func:`check_writeable`, which returns None, and :func:`check_disjoint`,
    which returns the arrays' byte spans.

Scalars
    Every public function checks its scalar arguments with one validator
    per kind of value: :func:`flag`, :func:`choice`, :func:`check_callable`,
    :func:`integer`, :func:`step_count` (a count read back from a
    state_dict), :func:`real_number` (the type check) and
    :func:`bounded_real` (a real number in a range, finite unless told).
    Each returns the cleaned value or raises TypeError (wrong type) or
    ValueError (wrong value), never OverflowError.  The few wrappers serve
    callers whose rules really differ: SciPy's options
    (:func:`positive_option`), torch.optim's "Invalid ..." hyperparameter
    rules (:func:`real_in_range`, :func:`betas`) and a schedule's step
    (:func:`fractional_step`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from numbers import Integral, Real
from operator import index
from typing import Any, Literal, TypeVar, overload

import numpy as np

from fastopt._memory import byte_span
from fastopt._storage import BFLOAT16, PARAM_DTYPES, dtype_name

_T = TypeVar("_T")

#: What the float-only code takes (batch norm, the minimizers, distributed buffers); optimizer parameters and
#: their gradients may also be bfloat16 (:data:`fastopt._storage.PARAM_DTYPES`).
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float(value: Any) -> float:
    """``float(value)`` for a real number, with ints beyond float's range as infinities (not OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def dtype_names(dtypes: Iterable[Any]) -> str:
    """``"float32 or float64"``, ``"float32, float64 or bfloat16"``: ``dtypes`` as a message lists them."""
    names = [dtype_name(d) for d in dtypes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


# DLPack's device type of host memory (kDLCPU): the only memory fastopt's kernels can step.
_DLPACK_CPU = 1


def as_array(obj: Any, name: str) -> Any:
    """``obj`` itself if it is not a DLPack producer, else a NumPy view of the same memory (never a copy).

    Objects with ``__dlpack__`` (torch CPU tensors, JAX arrays, ...) are
    taken wherever fastopt takes an array: the view shares the producer's
    memory, so in-place updates reach it, and the checks that follow (dtype,
    contiguity, writeability) apply to it as to any array.  DLPack 1.0
    carries a read-only flag, which the view keeps.  A torch tensor is viewed
    through ``Tensor.numpy()`` (writeable whatever the NumPy version; a
    bfloat16 one as ``ml_dtypes.bfloat16``).  Memory on another device, or
    that NumPy cannot view (an unsupported dtype, a torch tensor that
    requires grad), is refused with an error naming ``name``.
    """
    if isinstance(obj, np.ndarray) or not hasattr(obj, "__dlpack__"):
        return obj
    try:
        device = obj.__dlpack_device__()
    except Exception:  # a producer without __dlpack_device__ is asked by from_dlpack below
        device = (_DLPACK_CPU, 0)
    if device[0] != _DLPACK_CPU:
        raise ValueError(f"{name} lives on DLPack device {tuple(device)}, not in host memory; fastopt steps CPU "
                         "arrays (move it to the CPU first)")
    try:
        if type(obj).__module__.startswith("torch") and hasattr(obj, "numpy"):
            return _torch_view(obj)
        # NumPy < 2.1 has no copy= (and never copies); from 2.1 on, copy=False makes sure.
        return np.from_dlpack(obj, copy=False) if _DLPACK_COPY else np.from_dlpack(obj)
    except Exception as exc:
        hint = (" (pass tensor.detach(), which shares the memory, or use the optimizers of fastopt.torch)"
                if "grad" in str(exc) else "")
        raise TypeError(f"{name}: a {type(obj).__name__} that NumPy cannot view without a copy: {exc}{hint}") from None


def _torch_view(tensor: Any) -> Any:
    if tensor.requires_grad:
        raise TypeError("it requires grad")
    if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16 of its own: the bits, as ml_dtypes' type
        import torch  # only ever reached with torch loaded: the tensor is one of its own

        return tensor.view(torch.int16).numpy().view(BFLOAT16)
    return tensor.numpy()


_DLPACK_COPY = np.lib.NumpyVersion(np.__version__) >= "2.1.0"


def check_float_array(arr: Any, name: str, dtypes: Collection[Any] = FLOAT_DTYPES) -> Any:
    """Require a C-contiguous ndarray of one of ``dtypes`` (by default float32 or float64); return it unchanged."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype {dtype_names(dtypes)}, got {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (fastopt updates arrays in place and never copies them)")
    if not arr.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype's size (a view at an odd byte offset?)")
    return arr


def check_writeable(arr: Any, name: str) -> None:
    """Raise ValueError unless ``arr`` is writeable; returns None."""
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only; fastopt updates parameters in place")


def check_param(arr: Any, name: str, dtypes: Collection[Any] = PARAM_DTYPES) -> Any:
    """A parameter: a writeable C-contiguous ndarray of one of ``dtypes`` (float32, float64 or bfloat16)."""
    check_float_array(arr, name, dtypes)
    check_writeable(arr, name)
    return arr


def check_grad(grad: Any, param: Any, grad_name: str, param_name: str, dtypes: Collection[Any] = PARAM_DTYPES) -> Any:
    """A gradient of one of ``dtypes`` matching ``param`` in dtype and shape (overlap is checked by the caller)."""
    check_float_array(grad, grad_name, dtypes)
    if grad.dtype != param.dtype:
        raise TypeError(f"{grad_name} has dtype {grad.dtype} but {param_name} has dtype {param.dtype}")
    if grad.shape != param.shape:
        raise ValueError(f"{grad_name} has shape {grad.shape} but {param_name} has shape {param.shape}")
    return grad


def check_disjoint(arrays: Sequence[Any], names: Sequence[str], what: str) -> list[tuple[int, int, int]]:
    """Raise ValueError if any two non-empty arrays overlap in memory.

    ``arrays`` must be C-contiguous, so an array occupies exactly the bytes
    between its first and last element.  Sorting by start address finds any
    overlap in O(n log n).  Returns the sorted ``(start, end, index)`` spans.
    """
    spans = sorted((byte_span(a) + (i,) for i, a in enumerate(arrays) if a.size), key=lambda s: s[0])
    for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
        if start < end:
            first, second = sorted((i, j))
            raise ValueError(f"{what} {names[first]} and {names[second]} share memory; each must be a separate array")
    return spans


# --------------------------------------------------------------------------- flags and choices
def flag(name: str, value: object, *, ints: type | tuple[type, ...] | None = int,
         message: str = "{name} must be True or False, got {value!r}") -> bool:
    """A boolean option, as a bool: ``True``, ``False``, a NumPy bool, or an integer 0 or 1 of type ``ints``.

    Parameters
    ----------
    name : str
        The argument, as the message names it.
    value : object
    ints : type or None, default int
        Which integers stand for False and True (so that typos like
        ``"False"`` fail while ``0`` and ``1`` pass).  This is one policy
        with three settings, because the callers really differ: ``int``
        (Python ints, as torch's optimizer flags), ``numbers.Integral``
        (NumPy integers too: the schedules, whose arguments often come from
        NumPy arithmetic), or None (bools only: the data and batchnorm
        functions, where ``shuffle=1`` is more likely a misplaced argument).
    message : str, default "{name} must be True or False, got {value!r}"
        The TypeError's message, formatted with ``name``, ``value`` and
        ``type`` (the name of the value's type).

    Raises
    ------
    TypeError
        For any other value.
    """
    if value is True or value is False:  # the common case first: a step checks its flags every time
        return value
    if isinstance(value, (bool, np.bool_)) or (ints is not None and isinstance(value, ints) and value in (0, 1)):
        return bool(value)
    raise TypeError(message.format(name=name, value=value, type=type(value).__name__))


def choice(name: str, value: _T, options: Collection[object], *, expected: str | None = None) -> _T:
    """One of ``options`` (compared with ``in``), returned as given; else ValueError.

    ``expected`` is what the message says ``name`` must be; by default
    "one of " and the options' reprs.
    """
    if value not in options:
        expected = expected or f"one of {', '.join(map(repr, options))}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_callable(name: str, value: _T) -> _T:
    """``value`` itself if it is callable; else TypeError ``"<name> must be callable, got <type>"``."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- integers
def integer(name: str, value: Any, low: int | None = None, *, expected: str = "an integer",
            too_small: str | None = None) -> int:
    """An integer (anything with ``__index__``: Python and NumPy integers, not a bool) >= ``low``, as an int.

    Parameters
    ----------
    name : str
    value : object
    low : int, optional
        Smallest value allowed.
    expected : str, default "an integer"
        What the TypeError says ``name`` must be.
    too_small : str, optional
        What the ValueError for a value below ``low`` says it must be;
        defaults to ``"an integer >= <low>"`` (to ``expected`` when that is
        not the default, e.g. "a positive integer").

    Raises
    ------
    TypeError
        ``"<name> must be <expected>, got <type> <repr>"`` for a bool or a
        value without ``__index__`` (floats, strings).
    ValueError
        ``"<name> must be <too_small>, got <value>"`` below ``low``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    try:
        number = index(value)
    except TypeError:
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}") from None
    if low is not None and number < low:
        too_small = too_small or (f"an integer >= {low}" if expected == "an integer" else expected)
        raise ValueError(f"{name} must be {too_small}, got {number}")
    return number


def step_count(what: str, value: object) -> int:
    """A step count (``step``, ``skipped_steps``) read back from a state_dict: a non-negative integer below 2**63.

    Python and NumPy integers (and 0-d integer arrays) only, returned as an
    int; the largest value is one an optimizer's counter can reach.

    Raises
    ------
    ValueError
        ``"<what> must be a non-negative integer below 2**63, got ..."`` for
        anything else (a float, a bool, a negative or too large count): a
        state_dict holding one is corrupt, not of the wrong type.
    """
    scalar = np.asarray(value)
    if scalar.shape != () or scalar.dtype.kind not in "iu" or not 0 <= int(scalar) < 2**63:
        shown = int(scalar) if scalar.shape == () and scalar.dtype.kind in "iu" else value
        raise ValueError(f"{what} must be a non-negative integer below 2**63, got {shown!r}")
    return int(scalar)


# --------------------------------------------------------------------------- real numbers
def real_number(name: str, value: _T, *, expected: str = "a real number") -> _T:
    """``value`` itself if it is a real number (``numbers.Real``, not a bool); else TypeError.

    The message is ``"<name> must be <expected>, got <type> <repr>"``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    return value


def _in_range(number: float, low: float, high: float, low_open: bool, high_open: bool, allow_inf: bool) -> bool:
    """Whether the float ``number`` is within the bounds (and finite unless ``allow_inf``); NaN never is."""
    above = low < number if low_open else low <= number
    below = number < high if high_open else number <= high
    return (allow_inf or math.isfinite(number)) and above and below


def bounded_real(name: str, value: object, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
                 high_open: bool = False, allow_inf: bool = False, float_like: bool = False,
                 expected: str = "a real number", must: str | None = None) -> float:
    """A real number within ``[low, high]`` (either end open on request), as a float: the one range check.

    NaN is always refused, infinity unless ``allow_inf``; an int beyond
    float's range counts as infinite (:func:`as_float`), so no value raises
    OverflowError.

    Parameters
    ----------
    name : str
    value : object
    low, high : float, default -inf and inf
    low_open, high_open : bool, default False
        Exclude the bound itself.
    allow_inf : bool, default False
        Accept an infinity within the bounds (``high=inf`` and ``allow_inf``
        lets ``inf`` in).
    float_like : bool, default False
        Accept anything ``float()`` converts (a 0-d array, as torch's clip
        functions take a 0-d tensor), not only ``numbers.Real``; strings,
        bytes and bools are still refused.
    expected : str, default "a real number"
        What the TypeError says ``name`` must be.
    must : str, optional
        What the ValueError says it must be; by default "a finite number"
        followed by the finite bounds (``"a finite number > 0 and <= 1"``),
        or, with ``allow_inf``, just the bounds and "(inf allowed)".

    Raises
    ------
    TypeError
        ``"<name> must be <expected>, got <type> <repr>"``.
    ValueError
        ``"<name> must be <must>, got <value>"``.
    """
    if not float_like:
        number = as_float(real_number(name, value, expected=expected))
    elif isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    else:
        try:
            number = as_float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__}") from None
    if not _in_range(number, low, high, low_open, high_open, allow_inf):
        if must is None:
            bounds = [f"{'>' if low_open else '>='} {low:g}"] if low > -math.inf else []
            bounds += [f"{'<' if high_open else '<='} {high:g}"] if high < math.inf else []
            must = (f"{' and '.join(bounds)} (inf allowed)" if allow_inf
                    else f"a finite number{' and'.join(' ' + b for b in bounds)}")
        raise ValueError(f"{name} must be {must}, got {number}")
    return number


#: The name ``optim/lr_scheduler.py`` imports: :func:`bounded_real` (finite by default).
def fractional_step(t: Any) -> float:
    """The argument of a schedule's ``sched(t)``: a finite step count >= 0, fractional steps allowed.

    Returns an int for an integer ``t``, else a float; errors as
    :func:`bounded_real`, about "the step count t".
    """
    number = bounded_real("the step count t", t, 0.0, must="finite and >= 0")
    return index(t) if isinstance(t, Integral) else number


@overload
def positive_option(name: str, value: Any, *, integer: Literal[True], allow_zero: bool = False,
                    unlimited: Literal[False] = False) -> int: ...
@overload
def positive_option(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False,
                    unlimited: bool = False) -> float: ...
def positive_option(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False,
                    unlimited: bool = False) -> float:
    """A minimizer's option: a positive (or non-negative) real number or integer; messages say ``option <name>``.

    Kept apart from :func:`bounded_real` because SciPy's options differ:
    an integer option takes a whole float (``100.0``) but refuses ``2.5``
    (TypeError), and an ``unlimited`` option (``maxiter``, ``maxfun``) takes
    ``inf`` for "no limit", as SciPy users write it, and returns
    ``math.inf``.  Real numbers only: ``bool``, strings (``"1e-5"`` is not
    read as a number), complex numbers and None are a TypeError; NaN,
    negative values and (unless ``unlimited``) infinity a ValueError.

    Parameters
    ----------
    name : str
    value : object
    integer : bool, default False
        Return an int (a whole number is required).
    allow_zero : bool, default False
        Accept 0 ("non-negative" instead of "positive").
    unlimited : bool, default False
        Accept infinity.

    Returns
    -------
    float, int or math.inf
    """
    label = f"option {name}"
    real_number(label, value, expected=f"a real {'integer' if integer else 'number'}")
    if value != value:  # NaN (also a NaN of a numbers.Real type NumPy does not know)
        raise ValueError(f"{label} must be a number, got {value!r}")
    if not integer:
        value = as_float(value)  # an int beyond float's range (10**400) is as infinite as inf
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise ValueError(f"{label} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}")
    if value in (math.inf, -math.inf):  # (a huge int count is not a float, and stays a count)
        if unlimited:
            return math.inf
        raise ValueError(f"{label} must be finite, got {value!r}")
    if integer:
        if int(value) != value:
            raise TypeError(f"{label} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def random_generator(seed: Any) -> np.random.Generator:
    """A :class:`numpy.random.Generator` from a seed, as :func:`numpy.random.default_rng`, refusing booleans.

    Raises
    ------
    TypeError
        For a bool, or anything ``default_rng`` refuses (a negative int, a string).
    """
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be None, an int, a SeedSequence or a numpy.random.Generator, got {seed!r}")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as err:
        raise TypeError("seed must be None, a non-negative int, a SeedSequence or a numpy.random.Generator, "
                        f"got {type(seed).__name__} {seed!r} ({err})") from None


# --------------------------------------------------------------------------- hyperparameter rules
# The validators a ParamGroup applies (fastopt.optim._hyper): ``rule(name, value)``, with torch.optim's
# "Invalid ..." messages.

# How torch.optim names a hyperparameter in its "Invalid ..." messages.
_LABELS = {"lr": "learning rate", "eps": "epsilon value"}


def _label(name: str) -> str:
    if name.startswith("beta parameter"):  # betas' entries: torch's "Invalid beta parameter at index 0: ..."
        return name
    return _LABELS.get(name, f"{name} value")


def real_in_range(low: float = 0.0, high: float = math.inf, *, low_open: bool = False, high_open: bool = False,
                  allow_inf: bool = False) -> Callable[[str, object], float]:
    """Make a hyperparameter rule for a finite real number in ``[low, high]`` (either end open on request; with
    ``allow_inf``, an infinite bound is admitted too).

    Returns
    -------
    callable
        ``check(name, value)``: the value as a float, or TypeError (not a
        real number, :func:`real_number`) or ValueError ``"Invalid <label>:
        <value> (expected a finite value in [<low>, <high>])"``, where the
        label of ``lr`` is "learning rate", of ``eps`` "epsilon value", of a
        name starting "beta parameter" the name itself, and of any other
        ``name`` "<name> value", as torch.optim words it.
    """

    def check(name: str, value: object) -> float:
        value = as_float(real_number(name, value))
        if not _in_range(value, low, high, low_open, high_open, allow_inf):
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            raise ValueError(f"Invalid {_label(name)}: {value} (expected a {'' if allow_inf else 'finite '}value in "
                             f"{left}{low}, {high}{right})")
        return value

    return check


def _entries(name: str, value: Any, count: int, expected: str) -> tuple[object, ...]:
    """``value`` as a tuple of ``count`` entries; a TypeError ``"<name> must be <expected>, got <value>"`` if it is
    not a sequence of that many."""
    try:
        entries = tuple(value)
    except TypeError:
        entries = ()
    if len(entries) != count:
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    return entries


def betas(name: str, value: object, count: int = 2) -> tuple[float, ...]:
    """A hyperparameter rule for ``count`` decay rates (a pair; AdEMAMix has three), each in [0, 1):
    returns a tuple of floats.

    Raises
    ------
    TypeError
        When ``value`` is not a sequence of ``count``, or an entry is not a real number.
    ValueError
        ``"Invalid beta parameter at index <i>: <value> (expected a finite
        value in [0.0, 1.0))"`` for an entry outside [0, 1).
    """
    expected = "a pair of floats" if count == 2 else f"a sequence of {count} floats"
    return tuple(_unit_open(f"beta parameter at index {i}", b)
                 for i, b in enumerate(_entries(name, value, count, expected)))


def beta_triple(name: str, value: object) -> tuple[float, ...]:
    """:func:`betas` for three decay rates (AdEMAMix's)."""
    return betas(name, value, count=3)


def warmup_steps(name: str, value: object) -> int:
    """A hyperparameter rule for a number of warm-up steps: None (no warm-up, stored as 0) or an integer in
    [0, 2**63) (a whole float, ``100.0``, is taken as its integer)."""
    if value is None:
        return 0
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value):
        value = int(value)  # 100.0, as the reference takes it
    value = integer(name, value, 0, expected="None or an integer", too_small="None or an integer >= 0")
    if value >= 2**63:
        raise ValueError(f"{name} must be below 2**63, got {value}")
    return value


def eps_pair(name: str, value: object) -> tuple[float | None, float]:
    """A hyperparameter rule for Adafactor's ``eps``: a pair (eps1, eps2), eps1 None (the dtype's machine epsilon)
    or a finite real >= 0, eps2 a finite real >= 0; returns a tuple."""
    entries = _entries(name, value, 2, "a pair (eps1, eps2), eps1 None or a float")
    eps1 = None if entries[0] is None else nonnegative(f"{name}[0]", entries[0])
    return eps1, nonnegative(f"{name}[1]", entries[1])


def optional_beta(name: str, value: object) -> float | None:
    """A hyperparameter rule for None or a decay rate in [0, 1) (Prodigy's ``beta3``)."""
    return None if value is None else _unit_open(name, value)


def real_triple(name: str, value: object) -> tuple[float, ...]:
    """A hyperparameter rule for three finite reals (Muon's ``ns_coefficients``): returns a tuple of floats."""
    return tuple(any_real(f"{name}[{i}]", x) for i, x in enumerate(_entries(name, value, 3, "a sequence of 3 floats")))


def ns_steps(name: str, value: object) -> int:
    """A hyperparameter rule for a number of Newton-Schulz iterations: an integer in [0, 100), as torch's Muon."""
    value = integer(name, value, 0)
    if value >= 100:
        raise ValueError(f"{name} must be less than 100 for computational efficiency, got {value}")
    return value


def adjust_lr(name: str, value: object) -> object:
    """A hyperparameter rule for Muon's ``adjust_lr_fn``: None, "original" or "match_rms_adamw"."""
    if value is not None and value not in ("original", "match_rms_adamw"):
        raise ValueError(f"Adjust learning rate function {value!r} is not supported: {name} must be None, "
                         "'original' or 'match_rms_adamw'")
    return value


#: Rules shared by the optimizers: a real number >= 0, any finite real number, one in [0, 1], one in [0, 1).
nonnegative = real_in_range()
nonpositive = real_in_range(-math.inf, 0.0)
positive = real_in_range(0.0, low_open=True)  # finite, > 0
growth = real_in_range(0.0, low_open=True, allow_inf=True)  # > 0, inf included (Prodigy's growth_rate)
at_least_one = real_in_range(1.0, allow_inf=True)  # >= 1, inf included (Adafactor's clipping threshold d)
any_real = real_in_range(-math.inf, math.inf)
unit_interval = real_in_range(0.0, 1.0)
_unit_open = real_in_range(0.0, 1.0, high_open=True)
