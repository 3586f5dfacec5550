"""Checks on user arguments, done in Python before any kernel runs.

Arrays
    Kernels update arrays in place, so fastopt never converts or copies a
    parameter or gradient behind the user's back: an array that is not
    exactly what a kernel needs is refused with an error naming it
    (:func:`check_float_array`, :func:`check_param`, :func:`check_grad`,
    :func:`check_disjoint`).

Scalars
    Every public function checks its scalar arguments (flags, counts, real
    numbers in a range, choices) with the validators below, each of which
    returns the cleaned value or raises TypeError (wrong kind of value) or
    ValueError (right kind, out of range).  Modules word their messages
    differently (torch's "Invalid learning rate" for the optimizers, SciPy's
    "option ..." for the minimizers); the validators take that wording as
    arguments, so one implementation serves each kind of check.
"""
import math
from numbers import Integral, Real
from operator import index

import numpy as np

from fastopt._memory import byte_span

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float(value):
    """``float(value)`` for a real number, with ints beyond float's range as infinities (not OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_float_array(arr, name):
    """Require a C-contiguous float32/float64 ndarray; return it unchanged."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (fastopt updates arrays in place and never copies them)")
    if not arr.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype's size (a view at an odd byte offset?)")
    return arr


def check_writeable(arr, name):
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only; fastopt updates parameters in place")


def check_param(arr, name):
    """A parameter: a writeable C-contiguous float32/float64 ndarray."""
    check_float_array(arr, name)
    check_writeable(arr, name)
    return arr


def check_grad(grad, param, grad_name, param_name):
    """A gradient matching ``param`` in dtype and shape (overlap is checked by the caller)."""
    check_float_array(grad, grad_name)
    if grad.dtype != param.dtype:
        raise TypeError(f"{grad_name} has dtype {grad.dtype} but {param_name} has dtype {param.dtype}")
    if grad.shape != param.shape:
        raise ValueError(f"{grad_name} has shape {grad.shape} but {param_name} has shape {param.shape}")
    return grad


def check_disjoint(arrays, names, what):
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
def flag(name, value, *, ints=int, numpy_bools=True, message="{name} must be True or False, got {value!r}"):
    """A boolean option, as a bool.

    Parameters
    ----------
    name : str
        The argument, as the message names it.
    value : object
        A bool or NumPy bool, or an integer of type ``ints`` equal to 0 or
        1 (so that typos like ``"False"`` fail, while ``0`` and ``1`` pass).
    ints : type or None, default int
        The integers accepted as 0 and 1: ``int`` (Python ints only, as the
        optimizers' hyperparameters), ``numbers.Integral`` (NumPy integers
        too, as the schedules), or None for none (bools only).
    numpy_bools : bool, default True
        Accept ``numpy.bool_``.  The schedules do not (they take
        ``numbers.Integral`` 0 and 1, which NumPy's bools are not).
    message : str, default "{name} must be True or False, got {value!r}"
        The TypeError's message, formatted with ``name``, ``value`` and
        ``type`` (the name of the value's type).

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        For any other value.
    """
    if value is True or value is False:  # the common case first: a step checks its flags every time
        return value
    if isinstance(value, (bool, np.bool_) if numpy_bools else bool) or (
            ints is not None and isinstance(value, ints) and value in (0, 1)):
        return bool(value)
    raise TypeError(message.format(name=name, value=value, type=type(value).__name__))


def choice(name, value, options, *, expected=None):
    """One of ``options``, returned as given.

    Parameters
    ----------
    name : str
    value : object
    options : sequence
        The values allowed (compared with ``in``).
    expected : str, optional
        What the message says ``name`` must be; by default "one of " and
        the options' reprs.

    Raises
    ------
    ValueError
        When ``value`` is not one of ``options``.
    """
    if value not in options:
        expected = expected or f"one of {', '.join(map(repr, options))}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def check_callable(name, value):
    """``value`` itself if it is callable; else TypeError ``"<name> must be callable, got <type>"``."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- integers
def integer(name, value, *, low=None, expected="an integer", too_small=None):
    """An integer: anything with ``__index__`` (Python and NumPy integers) but a bool, as an int.

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
        defaults to ``expected``.

    Raises
    ------
    TypeError
        For a bool or a value without ``__index__`` (floats, strings).
    ValueError
        For a value below ``low``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    try:
        value = index(value)
    except TypeError:
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}") from None
    if low is not None and value < low:
        raise ValueError(f"{name} must be {too_small or expected}, got {value}")
    return value


def positive_int(name, value):
    """:func:`integer` >= 1, with the message ``"<name> must be a positive integer, got ..."``."""
    return integer(name, value, low=1, expected="a positive integer")


def int_at_least(name, value, low=0, *, expected=None):
    """An integer (``numbers.Integral``: Python and NumPy integers, not bool) >= ``low``, as an int.

    Parameters
    ----------
    name : str
    value : object
    low : int, default 0
    expected : str, optional
        What the ValueError says ``name`` must be; defaults to
        ``"an integer >= <low>"``.

    Raises
    ------
    TypeError
        ``"<name> must be an integer, got <type>"`` for anything else.
    ValueError
        For a value below ``low``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be {expected or f'an integer >= {low}'}, got {value}")
    return int(value)


def step_count(what, value):
    """A step count read back from a state_dict: a non-negative integer below 2**63, as an int.

    Python and NumPy integers (and 0-d integer arrays) only; the largest
    value is one an optimizer's counter can reach.

    Raises
    ------
    ValueError
        ``"<what> must be a non-negative integer below 2**63, got ..."`` for
        anything else (a float, a bool, a negative or too large count).
    """
    scalar = np.asarray(value)
    if scalar.shape != () or scalar.dtype.kind not in "iu" or not 0 <= int(scalar) < 2**63:
        shown = int(scalar) if scalar.shape == () and scalar.dtype.kind in "iu" else value
        raise ValueError(f"{what} must be a non-negative integer below 2**63, got {shown!r}")
    return int(scalar)


# --------------------------------------------------------------------------- real numbers
def real_number(name, value, *, expected="a real number", show_value=False):
    """``value`` itself if it is a real number (``numbers.Real``, not a bool), else TypeError.

    Parameters
    ----------
    name : str
    value : object
    expected : str, default "a real number"
        What the message says ``name`` must be.
    show_value : bool, default False
        End the message with the value's repr, after its type.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        shown = f" {value!r}" if show_value else ""
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}{shown}")
    return value


def _within(value, low, high, low_open, high_open):
    """Whether the float ``value`` is finite and within the bounds."""
    above = low < value if low_open else low <= value
    below = value < high if high_open else value <= high
    return math.isfinite(value) and above and below


def finite_real(name, value, low=-math.inf, high=math.inf, *, low_open=False, high_open=False):
    """A finite real number within ``[low, high]`` (either end open on request), as a float.

    Ints beyond float's range count as infinite (:func:`as_float`).

    Raises
    ------
    TypeError
        For anything but a real number (:func:`real_number`).
    ValueError
        ``"<name> must be a finite number >= <low> and <= <high>, got ..."``
        (only the finite bounds named, ``>``/``<`` for open ones).
    """
    value = as_float(real_number(name, value))
    if not _within(value, low, high, low_open, high_open):
        bounds = [f" {'>' if low_open else '>='} {low:g}"] if low > -math.inf else []
        bounds += [f" {'<' if high_open else '<='} {high:g}"] if high < math.inf else []
        raise ValueError(f"{name} must be a finite number{' and'.join(bounds)}, got {value}")
    return value


def finite_float(name, value, *, sign=None):
    """A finite real number, as ``float(value)``, optionally ``"positive"`` or ``"non-negative"``.

    Raises
    ------
    TypeError
        ``"<name> must be a real number, got <type> <repr>"`` for anything
        but a real number.
    ValueError
        ``"<name> must be finite, got ..."``, or ``"<name> must be <sign>,
        got ..."`` for a value of the wrong sign.
    OverflowError
        For an int beyond float's range.
    """
    value = float(real_number(name, value, show_value=True))
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if (sign == "positive" and value <= 0) or (sign == "non-negative" and value < 0):
        raise ValueError(f"{name} must be {sign}, got {value}")
    return value


def real_between(name, value, low, high):
    """A real number in ``[low, high]`` (NaN refused; an infinite bound lets infinity in), as a float.

    Raises
    ------
    TypeError
        For anything but a real number (:func:`real_number`).
    ValueError
        ``"<name> must be between <low> and <high>, got ..."``.
    """
    value = float(real_number(name, value))
    if not low <= value <= high:  # also refuses NaN
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def positive_or_inf(name, value, *, allow_zero=False, expected="a real number", bound=None):
    """Anything ``float()`` takes (but bools and strings) that is > 0 (>= 0 with ``allow_zero``), inf included.

    Parameters
    ----------
    name : str
    value : object
        A real number, or an object with ``__float__`` (a 0-d array).
    allow_zero : bool, default False
    expected : str, default "a real number"
        What the TypeError says ``name`` must be.
    bound : str, optional
        What the ValueError says it must be; defaults to ``"> 0 (inf
        allowed)"`` (``">= 0 (inf allowed)"`` with ``allow_zero``).

    Raises
    ------
    TypeError
        For a bool, a string, or a value ``float()`` refuses.
    ValueError
        For NaN and values below the bound; the message shows the value's repr.
    """
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}") from None
    if not (number >= 0 if allow_zero else number > 0):  # NaN fails both
        bound = bound or (">= 0 (inf allowed)" if allow_zero else "> 0 (inf allowed)")
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return number


def positive_option(name, value, *, integer=False, allow_zero=False, unlimited=False):
    """A minimizer's option: a positive (or non-negative) real number or integer; messages say ``option <name>``.

    Real numbers only: ``bool``, strings, complex numbers and None are a
    TypeError (``"1e-5"`` is not read as a number).  An integer option takes
    a whole float (``100.0``) but refuses ``2.5`` (TypeError).  NaN and
    negative values are a ValueError, and so is infinity, except that an
    ``unlimited`` option (``maxiter``, ``maxfun``) takes ``inf`` for "no
    limit", as SciPy users write it, and returns ``math.inf``.

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
    real_number(label, value, expected=f"a real {'integer' if integer else 'number'}", show_value=True)
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


def sample_count(name, value):
    """A number of samples: a finite int or float >= 0 (Python or NumPy, not bool), as a float.

    Raises
    ------
    TypeError
        ``"<name> must be a number of samples, got <type>"``.
    ValueError
        ``"<name> must be finite and >= 0, got ..."``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number of samples, got {type(value).__name__}")
    number = float(value)
    if not (np.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return number


def fractional_step(t):
    """The argument of a schedule's ``sched(t)``: a step count >= 0, fractional steps allowed.

    Returns an int for an integer ``t``, else a float.

    Raises
    ------
    TypeError
        ``"the step count t must be a real number, got <type>"``.
    ValueError
        ``"the step count t must be finite and >= 0, got ..."``.
    """
    real_number("the step count t", t)
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"the step count t must be finite and >= 0, got {t}")
    return int(t) if isinstance(t, Integral) else float(t)


def random_generator(seed):
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


def _label(name):
    return _LABELS.get(name, f"{name} value")


def real(low=0.0, high=math.inf, *, high_open=False):
    """A hyperparameter rule for a finite real number in ``[low, high]`` (``[low, high)`` with ``high_open``).

    Parameters
    ----------
    low, high : float, default 0 and inf
    high_open : bool, default False

    Returns
    -------
    callable
        ``check(name, value)``: the value as a float, or TypeError (not a
        real number) or ValueError ``"Invalid <label>: <value> (expected a
        finite value in [<low>, <high>])"``, where the label of ``lr`` is
        "learning rate", of ``eps`` "epsilon value", and of any other
        ``name`` "<name> value", as torch.optim words it.
    """

    def check(name, value):
        value = as_float(real_number(name, value))
        if not _within(value, low, high, False, high_open):
            right = ")" if high_open else "]"
            raise ValueError(f"Invalid {_label(name)}: {value} (expected a finite value in [{low}, {high}{right})")
        return value

    return check


def betas(name, value):
    """A hyperparameter rule for a pair of decay rates, each in [0, 1): returns a tuple of two floats.

    Raises
    ------
    TypeError
        When ``value`` is not a pair, or an entry is not a real number.
    ValueError
        ``"Invalid beta parameter at index <i>: ..."`` for an entry outside [0, 1).
    """
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise TypeError(f"{name} must be a pair of floats, got {value!r}")
    return tuple(_unit_open(f"beta parameter at index {i}", b) for i, b in enumerate(pair))


#: Rules shared by the optimizers: a real number >= 0, any finite real number, one in [0, 1], one in [0, 1).
nonnegative = real()
any_real = real(-math.inf, math.inf)
unit_interval = real(0.0, 1.0)
_unit_open = real(0.0, 1.0, high_open=True)
