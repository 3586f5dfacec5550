"""The unconstrained test problems of Moré, Garbow and Hillstrom.

J. J. Moré, B. S. Garbow and K. E. Hillstrom, "Testing Unconstrained
Optimization Software", ACM Transactions on Mathematical Software 7(1),
17-41, 1981, https://doi.org/10.1145/355934.355936.

All 35 problems of the paper are here, numbered as there.  The residuals and
their Jacobians were written for this module from the paper's formulas; the
paper's data tables, standard starting points and reported minima are
transcribed from it.  Each problem is a sum of squares

    f(x) = sum_i r_i(x)**2,    grad f(x) = 2 J(x)^T r(x),

with the residuals r (shape ``(m,)``) and their Jacobian J (shape ``(m, n)``)
given analytically.  The Hessian is the complex-step derivative of the
analytic gradient, exact to rounding, so every residual and Jacobian is
written with operations that are analytic in x (no ``abs``, no conjugation;
the two unavoidable branches, in the helical valley's angle and the Gulf
function's absolute value, test only real parts).

Where the paper leaves a dimension free, the factory takes it as an argument
(``n``, and ``m`` where the paper lets it vary independently); the defaults
are the dimensions for which the paper reports a minimum.  ``fstar`` is the
paper's reported minimum value for the instance built, or None where the
paper gives none for those dimensions.  The paper quotes six significant
digits, so a nonzero ``fstar`` carries a relative rounding error of up to
5e-6.  ``xstar`` is given only where a minimizer is known exactly: from the
paper; x = 0 for the trigonometric function, by inspection; and for the
rank-1 linear functions one point of the paper's minimizing hyperplane.

Notes on the transcription:

* Gulf research and development (11): the paper's printed residual reads
  ``|y_i m i x_2|``; the ``m i`` is a typesetting error for a minus sign, so
  the residual is ``exp(-|y_i - x_2|**x_3 / x_1) - t_i``.  The default m = 99
  avoids m = 100, where ``y_100 = 25 = x_2*`` puts the minimizer on the kink
  of the absolute value.
* Kowalik and Osborne (15) uses the paper's rounded abscissae (0.167 for 1/6,
  and so on); the reported minimum belongs to those values.
"""
import inspect
import math

import numpy as np

__all__ = ["Problem", "PROBLEMS", "problem"]

# Step of the complex-step derivative: small enough that the O(h**2) error
# is far below rounding, large enough that h * |derivative| never underflows.
_COMPLEX_STEP = 1e-30


class Problem:
    """A nonlinear least-squares test problem f(x) = sum_i r_i(x)**2.

    Parameters
    ----------
    name : str
        Short identifier, the key in `PROBLEMS`.
    n : int
        Number of variables.
    m : int
        Number of residuals.
    x0 : array_like, shape (n,)
        Standard starting point.
    residuals : callable
        ``residuals(x) -> ndarray, shape (m,)``; must accept complex x.
    jacobian : callable
        ``jacobian(x) -> ndarray, shape (m, n)``; must accept complex x.
    fstar : float, optional
        Reported minimum value of f, if known for these dimensions.
    xstar : array_like, shape (n,), optional
        A minimizer, where it is known exactly.
    notes : str, optional
        Other minima, non-uniqueness and similar remarks.
    number : int, optional
        The problem's number in the paper.

    Attributes
    ----------
    x0, xstar : ndarray
        Read-only; copy before modifying.
    """

    def __init__(self, name, n, m, x0, residuals, jacobian, fstar=None, xstar=None, notes="", number=None):
        self.name = name
        self.n = n
        self.m = m
        self.x0 = _frozen(x0, n)
        self._residuals = residuals
        self._jacobian = jacobian
        self.fstar = fstar
        self.xstar = None if xstar is None else _frozen(xstar, n)
        self.notes = notes
        self.number = number

    def __repr__(self):
        return f"Problem({self.name!r}, n={self.n}, m={self.m})"

    def _point(self, x):
        x = np.asarray(x)
        x = x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)
        if x.shape != (self.n,):
            raise ValueError(f"{self.name}: expected x of shape ({self.n},), got {x.shape}")
        return x

    def residuals(self, x):
        """Residual vector r(x), shape (m,)."""
        return self._residuals(self._point(x))

    def jacobian(self, x):
        """Jacobian of the residuals, shape (m, n)."""
        return self._jacobian(self._point(x))

    def f(self, x):
        """Objective value sum_i r_i(x)**2."""
        r = self.residuals(x)
        return r @ r

    def grad(self, x):
        """Gradient 2 J(x)^T r(x), shape (n,)."""
        x = self._point(x)
        return 2.0 * (self._jacobian(x).T @ self._residuals(x))

    def fun_and_grad(self, x):
        """Objective value and gradient from one evaluation of r and J.

        Returns
        -------
        f : float
        g : ndarray, shape (n,)
        """
        x = self._point(x)
        r = self._residuals(x)
        return r @ r, 2.0 * (self._jacobian(x).T @ r)

    def hess(self, x):
        """Hessian, column by column as complex-step derivatives of the gradient.

        Parameters
        ----------
        x : array_like, shape (n,)
            A real point.

        Returns
        -------
        ndarray, shape (n, n)
        """
        x = self._point(x).astype(np.complex128)
        H = np.empty((self.n, self.n))
        for j in range(self.n):
            xj = x.copy()
            xj[j] += 1j * _COMPLEX_STEP
            H[:, j] = self.grad(xj).imag / _COMPLEX_STEP
        return H

    def hessp(self, x, p):
        """Hessian-vector product, the complex-step derivative of the gradient along p.

        Parameters
        ----------
        x, p : array_like, shape (n,)
            A real point and a real direction.

        Returns
        -------
        ndarray, shape (n,)
        """
        x = self._point(x)
        p = np.asarray(p, dtype=np.float64)
        return self.grad(x + 1j * _COMPLEX_STEP * p).imag / _COMPLEX_STEP


def _frozen(values, n):
    a = np.array(values, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"expected shape ({n},), got {a.shape}")
    a.flags.writeable = False
    return a


def _zeros(x, shape):
    """Zeros in x's dtype, so complex-step perturbations survive assignment."""
    return np.zeros(shape, dtype=x.dtype)


def _check(condition, message):
    if not condition:
        raise ValueError(message)


PROBLEMS = {}


def _register(name):
    def decorate(factory):
        PROBLEMS[name] = factory
        return factory
    return decorate


def problem(name, n=None, m=None):
    """Build a test problem by name.

    Parameters
    ----------
    name : str
        A key of `PROBLEMS`.
    n, m : int, optional
        Number of variables and of residuals, for the problems whose
        dimensions the paper leaves free; the factory's defaults otherwise.

    Returns
    -------
    Problem
    """
    factory = PROBLEMS[name]
    params = inspect.signature(factory).parameters
    kwargs = {}
    for key, value in (("n", n), ("m", m)):
        if value is not None:
            _check(key in params, f"{name} has a fixed {key}")
            kwargs[key] = value
    return factory(**kwargs)


# --- 1 and 21: (extended) Rosenbrock ----------------------------------------

def _rosenbrock_residuals(x):
    r = np.empty_like(x)
    r[0::2] = 10.0 * (x[1::2] - x[0::2] ** 2)
    r[1::2] = 1.0 - x[0::2]
    return r


def _rosenbrock_jacobian(x):
    J = _zeros(x, (x.size, x.size))
    k = np.arange(0, x.size, 2)
    J[k, k] = -20.0 * x[0::2]
    J[k, k + 1] = 10.0
    J[k + 1, k] = -1.0
    return J


@_register("rosenbrock")
def rosenbrock():
    """Rosenbrock function (1), n = m = 2."""
    return Problem("rosenbrock", 2, 2, [-1.2, 1.0], _rosenbrock_residuals, _rosenbrock_jacobian,
                   fstar=0.0, xstar=[1.0, 1.0], number=1)


# --- 2 -----------------------------------------------------------------------

@_register("freudenstein_roth")
def freudenstein_roth():
    """Freudenstein and Roth function (2), n = m = 2."""
    def residuals(x):
        x1, x2 = x
        return np.array([-13.0 + x1 + ((5.0 - x2) * x2 - 2.0) * x2,
                         -29.0 + x1 + ((x2 + 1.0) * x2 - 14.0) * x2])

    def jacobian(x):
        x2 = x[1]
        return np.array([[1.0, (10.0 - 3.0 * x2) * x2 - 2.0],
                         [1.0, (3.0 * x2 + 2.0) * x2 - 14.0]])

    return Problem("freudenstein_roth", 2, 2, [0.5, -2.0], residuals, jacobian, fstar=0.0, xstar=[5.0, 4.0],
                   notes="Local minimum f = 48.9842 at (11.41..., -0.8968...); most methods find it from x0.",
                   number=2)


# --- 3 -----------------------------------------------------------------------

@_register("powell_badly_scaled")
def powell_badly_scaled():
    """Powell badly scaled function (3), n = m = 2."""
    def residuals(x):
        x1, x2 = x
        return np.array([1e4 * x1 * x2 - 1.0, np.exp(-x1) + np.exp(-x2) - 1.0001])

    def jacobian(x):
        x1, x2 = x
        return np.array([[1e4 * x2, 1e4 * x1], [-np.exp(-x1), -np.exp(-x2)]])

    return Problem("powell_badly_scaled", 2, 2, [0.0, 1.0], residuals, jacobian, fstar=0.0,
                   notes="Minimizer (1.098...e-5, 9.106...).", number=3)


# --- 4 -----------------------------------------------------------------------

@_register("brown_badly_scaled")
def brown_badly_scaled():
    """Brown badly scaled function (4), n = 2, m = 3."""
    def residuals(x):
        x1, x2 = x
        return np.array([x1 - 1e6, x2 - 2e-6, x1 * x2 - 2.0])

    def jacobian(x):
        x1, x2 = x
        return np.array([[1.0, 0.0], [0.0, 1.0], [x2, x1]])

    return Problem("brown_badly_scaled", 2, 3, [1.0, 1.0], residuals, jacobian, fstar=0.0, xstar=[1e6, 2e-6],
                   number=4)


# --- 5 -----------------------------------------------------------------------

@_register("beale")
def beale():
    """Beale function (5), n = 2, m = 3."""
    y = np.array([1.5, 2.25, 2.625])
    i = np.arange(1, 4)

    def residuals(x):
        x1, x2 = x
        return y - x1 * (1.0 - x2 ** i)

    def jacobian(x):
        x1, x2 = x
        return np.stack([x2 ** i - 1.0, x1 * i * x2 ** (i - 1)], axis=1)

    return Problem("beale", 2, 3, [1.0, 1.0], residuals, jacobian, fstar=0.0, xstar=[3.0, 0.5], number=5)


# --- 6 -----------------------------------------------------------------------

@_register("jennrich_sampson")
def jennrich_sampson(m=10):
    """Jennrich and Sampson function (6), n = 2, m >= 2 (the paper's minimum is for m = 10)."""
    _check(m >= 2, "jennrich_sampson needs m >= 2")
    i = np.arange(1, m + 1)

    def residuals(x):
        x1, x2 = x
        return 2.0 + 2.0 * i - (np.exp(i * x1) + np.exp(i * x2))

    def jacobian(x):
        x1, x2 = x
        return np.stack([-i * np.exp(i * x1), -i * np.exp(i * x2)], axis=1)

    return Problem("jennrich_sampson", 2, m, [0.3, 0.4], residuals, jacobian,
                   fstar=124.362 if m == 10 else None,
                   notes="For m = 10 the minimizer is x1 = x2 = 0.2578 (to the paper's four digits).", number=6)


# --- 7 -----------------------------------------------------------------------

def _helical_angle(x1, x2):
    """The paper's theta(x1, x2) in (-1/4, 3/4) and its partial derivatives.

    Only real parts are compared, so the branch chosen at a complex-step
    perturbed point is the one at the underlying real point.
    """
    if x1.real > 0:
        theta = np.arctan(x2 / x1) / (2.0 * np.pi)
    elif x1.real < 0:
        theta = np.arctan(x2 / x1) / (2.0 * np.pi) + 0.5
    else:
        # On the x2 axis the limit from x1 > 0, written so it stays analytic in x1.
        theta = (0.25 if x2.real > 0 else -0.25) - np.arctan(x1 / x2) / (2.0 * np.pi)
    rho2 = x1 * x1 + x2 * x2
    return theta, -x2 / (2.0 * np.pi * rho2), x1 / (2.0 * np.pi * rho2)


@_register("helical_valley")
def helical_valley():
    """Helical valley function (7), n = m = 3."""
    def residuals(x):
        x1, x2, x3 = x
        theta = _helical_angle(x1, x2)[0]
        return np.array([10.0 * (x3 - 10.0 * theta), 10.0 * (np.sqrt(x1 * x1 + x2 * x2) - 1.0), x3])

    def jacobian(x):
        x1, x2, x3 = x
        _, d1, d2 = _helical_angle(x1, x2)
        rho = np.sqrt(x1 * x1 + x2 * x2)
        return np.array([[-100.0 * d1, -100.0 * d2, 10.0],
                         [10.0 * x1 / rho, 10.0 * x2 / rho, 0.0],
                         [0.0, 0.0, 1.0]])

    return Problem("helical_valley", 3, 3, [-1.0, 0.0, 0.0], residuals, jacobian, fstar=0.0, xstar=[1.0, 0.0, 0.0],
                   notes="theta is undefined at x1 = x2 = 0.", number=7)


# --- 8 -----------------------------------------------------------------------

@_register("bard")
def bard():
    """Bard function (8), n = 3, m = 15."""
    y = np.array([0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39])
    u = np.arange(1.0, 16.0)
    v = 16.0 - u
    w = np.minimum(u, v)

    def residuals(x):
        return y - (x[0] + u / (v * x[1] + w * x[2]))

    def jacobian(x):
        d2 = (v * x[1] + w * x[2]) ** 2
        return np.stack([-np.ones_like(d2), u * v / d2, u * w / d2], axis=1)

    return Problem("bard", 3, 15, [1.0, 1.0, 1.0], residuals, jacobian, fstar=8.21487e-3,
                   notes="Also f = 17.4286 at (0.8406..., -inf, -inf).", number=8)


# --- 9 -----------------------------------------------------------------------

@_register("gaussian")
def gaussian():
    """Gaussian function (9), n = 3, m = 15."""
    half = np.array([0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521])
    y = np.concatenate([half, [0.3989], half[::-1]])
    t = (8.0 - np.arange(1, 16)) / 2.0

    def residuals(x):
        d = t - x[2]
        return x[0] * np.exp(-x[1] * d * d / 2.0) - y

    def jacobian(x):
        d = t - x[2]
        e = np.exp(-x[1] * d * d / 2.0)
        return np.stack([e, -x[0] * e * d * d / 2.0, x[0] * e * x[1] * d], axis=1)

    return Problem("gaussian", 3, 15, [0.4, 1.0, 0.0], residuals, jacobian, fstar=1.12793e-8, number=9)


# --- 10 ----------------------------------------------------------------------

@_register("meyer")
def meyer():
    """Meyer function (10), n = 3, m = 16."""
    y = np.array([34780.0, 28610.0, 23650.0, 19630.0, 16370.0, 13720.0, 11540.0, 9744.0,
                  8261.0, 7030.0, 6005.0, 5147.0, 4427.0, 3820.0, 3307.0, 2872.0])
    t = 45.0 + 5.0 * np.arange(1, 17)

    def residuals(x):
        return x[0] * np.exp(x[1] / (t + x[2])) - y

    def jacobian(x):
        d = t + x[2]
        e = np.exp(x[1] / d)
        return np.stack([e, x[0] * e / d, -x[0] * e * x[1] / (d * d)], axis=1)

    return Problem("meyer", 3, 16, [0.02, 4000.0, 250.0], residuals, jacobian, fstar=87.9458, number=10)


# --- 11 ----------------------------------------------------------------------

@_register("gulf")
def gulf(m=99):
    """Gulf research and development function (11), n = 3, 3 <= m <= 100."""
    _check(3 <= m <= 100, "gulf needs 3 <= m <= 100")
    t = np.arange(1, m + 1) / 100.0
    y = 25.0 + (-50.0 * np.log(t)) ** (2.0 / 3.0)

    def power(x):
        d = y - x[1]
        sign = np.where(d.real >= 0, 1.0, -1.0)
        s = sign * d                            # |y_i - x2|, analytic near the real point
        p = s ** x[2]
        return sign, s, p

    def residuals(x):
        p = power(x)[2]
        return np.exp(-p / x[0]) - t

    def jacobian(x):
        sign, s, p = power(x)
        e = np.exp(-p / x[0])
        return np.stack([e * p / x[0] ** 2, e * sign * x[2] * p / (s * x[0]), -e * p * np.log(s) / x[0]], axis=1)

    return Problem("gulf", 3, m, [5.0, 2.5, 0.15], residuals, jacobian, fstar=0.0, xstar=[50.0, 25.0, 1.5],
                   number=11)


# --- 12 ----------------------------------------------------------------------

@_register("box_3d")
def box_3d(m=10):
    """Box three-dimensional function (12), n = 3, m >= 3."""
    _check(m >= 3, "box_3d needs m >= 3")
    t = 0.1 * np.arange(1, m + 1)
    c = np.exp(-t) - np.exp(-10.0 * t)

    def residuals(x):
        return np.exp(-t * x[0]) - np.exp(-t * x[1]) - x[2] * c

    def jacobian(x):
        return np.stack([-t * np.exp(-t * x[0]), t * np.exp(-t * x[1]), -c], axis=1)

    return Problem("box_3d", 3, m, [0.0, 10.0, 20.0], residuals, jacobian, fstar=0.0, xstar=[1.0, 10.0, 1.0],
                   notes="f = 0 also at (10, 1, -1) and wherever x1 = x2 and x3 = 0.", number=12)


# --- 13 and 22: (extended) Powell singular ----------------------------------

def _powell_singular_residuals(x):
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    r = np.empty_like(x)
    r[0::4] = a + 10.0 * b
    r[1::4] = math.sqrt(5.0) * (c - d)
    r[2::4] = (b - 2.0 * c) ** 2
    r[3::4] = math.sqrt(10.0) * (a - d) ** 2
    return r


def _powell_singular_jacobian(x):
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    J = _zeros(x, (x.size, x.size))
    k = np.arange(0, x.size, 4)
    J[k, k] = 1.0
    J[k, k + 1] = 10.0
    J[k + 1, k + 2] = math.sqrt(5.0)
    J[k + 1, k + 3] = -math.sqrt(5.0)
    J[k + 2, k + 1] = 2.0 * (b - 2.0 * c)
    J[k + 2, k + 2] = -4.0 * (b - 2.0 * c)
    J[k + 3, k] = 2.0 * math.sqrt(10.0) * (a - d)
    J[k + 3, k + 3] = -2.0 * math.sqrt(10.0) * (a - d)
    return J


_POWELL_SINGULAR_NOTE = "The Hessian is singular at the minimizer 0; convergence there is only linear."


@_register("powell_singular")
def powell_singular():
    """Powell singular function (13), n = m = 4."""
    return Problem("powell_singular", 4, 4, [3.0, -1.0, 0.0, 1.0], _powell_singular_residuals,
                   _powell_singular_jacobian, fstar=0.0, xstar=np.zeros(4), notes=_POWELL_SINGULAR_NOTE, number=13)


# --- 14 ----------------------------------------------------------------------

@_register("wood")
def wood():
    """Wood function (14), n = 4, m = 6."""
    s90, s10 = math.sqrt(90.0), math.sqrt(10.0)

    def residuals(x):
        x1, x2, x3, x4 = x
        return np.array([10.0 * (x2 - x1 * x1), 1.0 - x1, s90 * (x4 - x3 * x3), 1.0 - x3,
                         s10 * (x2 + x4 - 2.0), (x2 - x4) / s10])

    def jacobian(x):
        x1, _, x3, _ = x
        return np.array([[-20.0 * x1, 10.0, 0.0, 0.0],
                         [-1.0, 0.0, 0.0, 0.0],
                         [0.0, 0.0, -2.0 * s90 * x3, s90],
                         [0.0, 0.0, -1.0, 0.0],
                         [0.0, s10, 0.0, s10],
                         [0.0, 1.0 / s10, 0.0, -1.0 / s10]])

    return Problem("wood", 4, 6, [-3.0, -1.0, -3.0, -1.0], residuals, jacobian, fstar=0.0, xstar=np.ones(4),
                   number=14)


# --- 15 ----------------------------------------------------------------------

@_register("kowalik_osborne")
def kowalik_osborne():
    """Kowalik and Osborne function (15), n = 4, m = 11."""
    y = np.array([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246])
    u = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])

    def residuals(x):
        return y - x[0] * (u * u + u * x[1]) / (u * u + u * x[2] + x[3])

    def jacobian(x):
        num = u * u + u * x[1]
        den = u * u + u * x[2] + x[3]
        q = x[0] * num / (den * den)
        return np.stack([-num / den, -x[0] * u / den, q * u, q], axis=1)

    return Problem("kowalik_osborne", 4, 11, [0.25, 0.39, 0.415, 0.39], residuals, jacobian, fstar=3.07505e-4,
                   notes="Also f = 1.02734e-3 at (+inf, -14.07..., -inf, -inf).", number=15)


# --- 16 ----------------------------------------------------------------------

@_register("brown_dennis")
def brown_dennis(m=20):
    """Brown and Dennis function (16), n = 4, m >= 4 (the paper's minimum is for m = 20)."""
    _check(m >= 4, "brown_dennis needs m >= 4")
    t = np.arange(1, m + 1) / 5.0
    sin_t = np.sin(t)

    def parts(x):
        return x[0] + t * x[1] - np.exp(t), x[2] + x[3] * sin_t - np.cos(t)

    def residuals(x):
        a, b = parts(x)
        return a * a + b * b

    def jacobian(x):
        a, b = parts(x)
        return np.stack([2.0 * a, 2.0 * a * t, 2.0 * b, 2.0 * b * sin_t], axis=1)

    return Problem("brown_dennis", 4, m, [25.0, 5.0, -5.0, -1.0], residuals, jacobian,
                   fstar=85822.2 if m == 20 else None, number=16)


# --- 17 ----------------------------------------------------------------------

@_register("osborne1")
def osborne1():
    """Osborne 1 function (17), n = 5, m = 33."""
    y = np.array([0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751,
                  0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490,
                  0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406])
    t = 10.0 * np.arange(33)

    def residuals(x):
        return y - (x[0] + x[1] * np.exp(-t * x[3]) + x[2] * np.exp(-t * x[4]))

    def jacobian(x):
        e4, e5 = np.exp(-t * x[3]), np.exp(-t * x[4])
        return np.stack([-np.ones_like(e4), -e4, -e5, x[1] * t * e4, x[2] * t * e5], axis=1)

    return Problem("osborne1", 5, 33, [0.5, 1.5, -1.0, 0.01, 0.02], residuals, jacobian, fstar=5.46489e-5,
                   number=17)


# --- 18 ----------------------------------------------------------------------

@_register("biggs_exp6")
def biggs_exp6(m=13):
    """Biggs EXP6 function (18), n = 6, m >= 6."""
    _check(m >= 6, "biggs_exp6 needs m >= 6")
    t = 0.1 * np.arange(1, m + 1)
    y = np.exp(-t) - 5.0 * np.exp(-10.0 * t) + 3.0 * np.exp(-4.0 * t)

    def residuals(x):
        return x[2] * np.exp(-t * x[0]) - x[3] * np.exp(-t * x[1]) + x[5] * np.exp(-t * x[4]) - y

    def jacobian(x):
        e1, e2, e5 = np.exp(-t * x[0]), np.exp(-t * x[1]), np.exp(-t * x[4])
        return np.stack([-t * x[2] * e1, t * x[3] * e2, e1, -e2, -t * x[5] * e5, e5], axis=1)

    notes = "f = 0 also at other points, e.g. with the two positive exponentials swapped."
    if m == 13:
        notes += " For m = 13 there is a local minimum f = 5.65565e-3."
    return Problem("biggs_exp6", 6, m, [1.0, 2.0, 1.0, 1.0, 1.0, 1.0], residuals, jacobian, fstar=0.0,
                   xstar=[1.0, 10.0, 1.0, 5.0, 4.0, 3.0], notes=notes, number=18)


# --- 19 ----------------------------------------------------------------------

@_register("osborne2")
def osborne2():
    """Osborne 2 function (19), n = 11, m = 65."""
    y = np.array([1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746,
                  0.679, 0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649,
                  0.694, 0.644, 0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395,
                  0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653,
                  0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739,
                  0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054])
    t = np.arange(65) / 10.0

    def terms(x):
        """The model's four exponentials; the last three are Gaussians in t."""
        d = t[:, None] - x[8:11]                # centres x9, x10, x11
        return np.exp(-t * x[4]), d, np.exp(-d * d * x[5:8])   # widths x6, x7, x8

    def residuals(x):
        e1, _, g = terms(x)
        return y - (x[0] * e1 + g @ x[1:4])

    def jacobian(x):
        e1, d, g = terms(x)
        J = _zeros(x, (65, 11))
        J[:, 0] = -e1
        J[:, 1:4] = -g
        J[:, 4] = x[0] * t * e1
        J[:, 5:8] = x[1:4] * d * d * g
        J[:, 8:11] = -2.0 * x[1:4] * x[5:8] * d * g
        return J

    return Problem("osborne2", 11, 65, [1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5], residuals,
                   jacobian, fstar=4.01377e-2, number=19)


# --- 20 ----------------------------------------------------------------------

_WATSON_FSTAR = {6: 2.28767e-3, 9: 1.39976e-6, 12: 4.72238e-10}


@_register("watson")
def watson(n=6):
    """Watson function (20), 2 <= n <= 31, m = 31 (the paper's minima are for n = 6, 9, 12)."""
    _check(2 <= n <= 31, "watson needs 2 <= n <= 31")
    t = np.arange(1, 30) / 29.0
    powers = t[:, None] ** np.arange(n)                                  # t_i**(j-1)
    slopes = np.zeros((29, n))
    slopes[:, 1:] = np.arange(1, n) * powers[:, :-1]                     # (j-1) t_i**(j-2)

    def residuals(x):
        p = powers @ x
        r = _zeros(x, 31)
        r[:29] = slopes @ x - p * p - 1.0
        r[29] = x[0]
        r[30] = x[1] - x[0] * x[0] - 1.0
        return r

    def jacobian(x):
        J = _zeros(x, (31, n))
        J[:29] = slopes - 2.0 * (powers @ x)[:, None] * powers
        J[29, 0] = 1.0
        J[30, 0] = -2.0 * x[0]
        J[30, 1] = 1.0
        return J

    return Problem("watson", n, 31, np.zeros(n), residuals, jacobian, fstar=_WATSON_FSTAR.get(n), number=20)


# --- 21 ----------------------------------------------------------------------

@_register("extended_rosenbrock")
def extended_rosenbrock(n=10):
    """Extended Rosenbrock function (21), n even, m = n."""
    _check(n >= 2 and n % 2 == 0, "extended_rosenbrock needs an even n >= 2")
    return Problem("extended_rosenbrock", n, n, np.tile([-1.2, 1.0], n // 2), _rosenbrock_residuals,
                   _rosenbrock_jacobian, fstar=0.0, xstar=np.ones(n), number=21)


# --- 22 ----------------------------------------------------------------------

@_register("extended_powell_singular")
def extended_powell_singular(n=12):
    """Extended Powell singular function (22), n a multiple of 4, m = n."""
    _check(n >= 4 and n % 4 == 0, "extended_powell_singular needs n a positive multiple of 4")
    return Problem("extended_powell_singular", n, n, np.tile([3.0, -1.0, 0.0, 1.0], n // 4),
                   _powell_singular_residuals, _powell_singular_jacobian, fstar=0.0, xstar=np.zeros(n),
                   notes=_POWELL_SINGULAR_NOTE, number=22)


# --- 23 ----------------------------------------------------------------------

_PENALTY_A = 1e-5


@_register("penalty1")
def penalty1(n=10):
    """Penalty function I (23), n >= 1, m = n + 1 (the paper's minima are for n = 4, 10)."""
    _check(n >= 1, "penalty1 needs n >= 1")
    sa = math.sqrt(_PENALTY_A)

    def residuals(x):
        r = _zeros(x, n + 1)
        r[:n] = sa * (x - 1.0)
        r[n] = x @ x - 0.25
        return r

    def jacobian(x):
        J = _zeros(x, (n + 1, n))
        J[:n] = sa * np.eye(n)
        J[n] = 2.0 * x
        return J

    return Problem("penalty1", n, n + 1, np.arange(1.0, n + 1), residuals, jacobian,
                   fstar={4: 2.24997e-5, 10: 7.08765e-5}.get(n), number=23)


# --- 24 ----------------------------------------------------------------------

@_register("penalty2")
def penalty2(n=10):
    """Penalty function II (24), n >= 2, m = 2n (the paper's minima are for n = 4, 10)."""
    _check(n >= 2, "penalty2 needs n >= 2")
    sa = math.sqrt(_PENALTY_A)
    i = np.arange(2, n + 1)
    y = np.exp(i / 10.0) + np.exp((i - 1) / 10.0)
    weights = np.arange(n, 0, -1.0)                                      # n - j + 1

    def residuals(x):
        e = np.exp(x / 10.0)
        r = _zeros(x, 2 * n)
        r[0] = x[0] - 0.2
        r[1:n] = sa * (e[1:] + e[:-1] - y)
        r[n:2 * n - 1] = sa * (e[1:] - math.exp(-0.1))
        r[2 * n - 1] = weights @ (x * x) - 1.0
        return r

    def jacobian(x):
        de = sa * np.exp(x / 10.0) / 10.0
        J = _zeros(x, (2 * n, n))
        k = np.arange(1, n)
        J[0, 0] = 1.0
        J[k, k] = de[1:]
        J[k, k - 1] = de[:-1]
        J[n - 1 + k, k] = de[1:]
        J[2 * n - 1] = 2.0 * weights * x
        return J

    return Problem("penalty2", n, 2 * n, np.full(n, 0.5), residuals, jacobian,
                   fstar={4: 9.37629e-6, 10: 2.93660e-4}.get(n), number=24)


# --- 25 ----------------------------------------------------------------------

@_register("variably_dimensioned")
def variably_dimensioned(n=10):
    """Variably dimensioned function (25), n >= 1, m = n + 2."""
    _check(n >= 1, "variably_dimensioned needs n >= 1")
    j = np.arange(1.0, n + 1)

    def residuals(x):
        s = j @ (x - 1.0)
        r = _zeros(x, n + 2)
        r[:n] = x - 1.0
        r[n] = s
        r[n + 1] = s * s
        return r

    def jacobian(x):
        J = _zeros(x, (n + 2, n))
        J[:n] = np.eye(n)
        J[n] = j
        J[n + 1] = 2.0 * (j @ (x - 1.0)) * j
        return J

    return Problem("variably_dimensioned", n, n + 2, 1.0 - j / n, residuals, jacobian, fstar=0.0, xstar=np.ones(n),
                   number=25)


# --- 26 ----------------------------------------------------------------------

@_register("trigonometric")
def trigonometric(n=10):
    """Trigonometric function (26), n >= 1, m = n."""
    _check(n >= 1, "trigonometric needs n >= 1")
    i = np.arange(1.0, n + 1)

    def residuals(x):
        return n - np.sum(np.cos(x)) + i * (1.0 - np.cos(x)) - np.sin(x)

    def jacobian(x):
        J = np.tile(np.sin(x), (n, 1))
        J[np.arange(n), np.arange(n)] += i * np.sin(x) - np.cos(x)
        return J

    return Problem("trigonometric", n, n, np.full(n, 1.0 / n), residuals, jacobian, fstar=0.0, xstar=np.zeros(n),
                   notes="Has local minima with f > 0.  For n = 10, BFGS, L-BFGS-B and Levenberg-Marquardt all "
                         "converge from x0 to one with f = 2.79506e-5 (found here, not stated in the paper).",
                   number=26)


# --- 27 ----------------------------------------------------------------------

@_register("brown_almost_linear")
def brown_almost_linear(n=10):
    """Brown almost-linear function (27), n >= 1, m = n."""
    _check(n >= 1, "brown_almost_linear needs n >= 1")

    def residuals(x):
        r = x + np.sum(x) - (n + 1.0)
        r[n - 1] = np.prod(x) - 1.0
        return r

    def jacobian(x):
        J = np.eye(n, dtype=x.dtype) + 1.0
        # Products of all x_k except x_j, without dividing (x may hold zeros).
        before = np.concatenate([[1.0], np.cumprod(x[:-1])])
        after = np.concatenate([np.cumprod(x[:0:-1])[::-1], [1.0]])
        J[n - 1] = before * after
        return J

    return Problem("brown_almost_linear", n, n, np.full(n, 0.5), residuals, jacobian, fstar=0.0, xstar=np.ones(n),
                   notes="f = 0 at (a, ..., a, a**(1-n)) for each root a of n a**n - (n+1) a**(n-1) + 1 = 0; "
                         "also f = 1 at (0, ..., 0, n+1).", number=27)


# --- 28 ----------------------------------------------------------------------

def _grid(n):
    h = 1.0 / (n + 1)
    t = h * np.arange(1, n + 1)
    return h, t


@_register("discrete_boundary_value")
def discrete_boundary_value(n=10):
    """Discrete boundary value function (28), n >= 1, m = n."""
    _check(n >= 1, "discrete_boundary_value needs n >= 1")
    h, t = _grid(n)

    def residuals(x):
        padded = np.concatenate([[0.0], x, [0.0]])                       # x_0 = x_{n+1} = 0
        return 2.0 * x - padded[:-2] - padded[2:] + h * h * (x + t + 1.0) ** 3 / 2.0

    def jacobian(x):
        k = np.arange(n)
        J = _zeros(x, (n, n))
        J[k, k] = 2.0 + 1.5 * h * h * (x + t + 1.0) ** 2
        J[k[1:], k[:-1]] = -1.0
        J[k[:-1], k[1:]] = -1.0
        return J

    return Problem("discrete_boundary_value", n, n, t * (t - 1.0), residuals, jacobian, fstar=0.0, number=28)


# --- 29 ----------------------------------------------------------------------

@_register("discrete_integral_equation")
def discrete_integral_equation(n=10):
    """Discrete integral equation function (29), n >= 1, m = n."""
    _check(n >= 1, "discrete_integral_equation needs n >= 1")
    h, t = _grid(n)
    # Kernel weights: (1 - t_i) t_j for j <= i, t_i (1 - t_j) for j > i.
    lower = np.tril(np.ones((n, n), dtype=bool))
    kernel = np.where(lower, np.outer(1.0 - t, t), np.outer(t, 1.0 - t))

    def residuals(x):
        return x + h / 2.0 * (kernel @ (x + t + 1.0) ** 3)

    def jacobian(x):
        return np.eye(n) + h / 2.0 * kernel * (3.0 * (x + t + 1.0) ** 2)

    return Problem("discrete_integral_equation", n, n, t * (t - 1.0), residuals, jacobian, fstar=0.0, number=29)


# --- 30 ----------------------------------------------------------------------

@_register("broyden_tridiagonal")
def broyden_tridiagonal(n=10):
    """Broyden tridiagonal function (30), n >= 1, m = n."""
    _check(n >= 1, "broyden_tridiagonal needs n >= 1")

    def residuals(x):
        padded = np.concatenate([[0.0], x, [0.0]])                       # x_0 = x_{n+1} = 0
        return (3.0 - 2.0 * x) * x - padded[:-2] - 2.0 * padded[2:] + 1.0

    def jacobian(x):
        k = np.arange(n)
        J = _zeros(x, (n, n))
        J[k, k] = 3.0 - 4.0 * x
        J[k[1:], k[:-1]] = -1.0
        J[k[:-1], k[1:]] = -2.0
        return J

    return Problem("broyden_tridiagonal", n, n, np.full(n, -1.0), residuals, jacobian, fstar=0.0, number=30)


# --- 31 ----------------------------------------------------------------------

@_register("broyden_banded")
def broyden_banded(n=10):
    """Broyden banded function (31), n >= 1, m = n, lower bandwidth 5, upper 1."""
    _check(n >= 1, "broyden_banded needs n >= 1")
    offset = np.subtract.outer(np.arange(n), np.arange(n))               # i - j
    band = ((offset >= -1) & (offset <= 5) & (offset != 0)).astype(float)

    def residuals(x):
        return x * (2.0 + 5.0 * x * x) + 1.0 - band @ (x * (1.0 + x))

    def jacobian(x):
        return np.diag(2.0 + 15.0 * x * x) - band * (1.0 + 2.0 * x)

    return Problem("broyden_banded", n, n, np.full(n, -1.0), residuals, jacobian, fstar=0.0, number=31)


# --- 32 ----------------------------------------------------------------------

def _check_linear(name, n, m):
    _check(n >= 1 and m >= n, f"{name} needs 1 <= n <= m")


@_register("linear_full_rank")
def linear_full_rank(n=10, m=20):
    """Linear function, full rank (32), n >= 1, m >= n."""
    _check_linear("linear_full_rank", n, m)
    A = np.eye(m, n) - 2.0 / m

    def residuals(x):
        return A @ x - 1.0

    def jacobian(x):
        return A.copy()

    return Problem("linear_full_rank", n, m, np.ones(n), residuals, jacobian, fstar=float(m - n),
                   xstar=-np.ones(n), number=32)


# --- 33 ----------------------------------------------------------------------

@_register("linear_rank1")
def linear_rank1(n=10, m=20):
    """Linear function, rank 1 (33), n >= 1, m >= n."""
    _check_linear("linear_rank1", n, m)
    A = np.outer(np.arange(1.0, m + 1), np.arange(1.0, n + 1))            # i * j

    def residuals(x):
        return A @ x - 1.0

    def jacobian(x):
        return A.copy()

    xstar = np.zeros(n)
    xstar[0] = 3.0 / (2 * m + 1)
    return Problem("linear_rank1", n, m, np.ones(n), residuals, jacobian, fstar=m * (m - 1) / (2.0 * (2 * m + 1)),
                   xstar=xstar, notes="Minimized on the whole hyperplane sum_j j x_j = 3 / (2m + 1).", number=33)


# --- 34 ----------------------------------------------------------------------

@_register("linear_rank1_zero")
def linear_rank1_zero(n=10, m=20):
    """Linear function, rank 1 with zero columns and rows (34), n >= 3, m >= n."""
    _check_linear("linear_rank1_zero", n, m)
    _check(n >= 3, "linear_rank1_zero needs n >= 3")
    A = np.zeros((m, n))
    A[1:m - 1, 1:n - 1] = np.outer(np.arange(1.0, m - 1), np.arange(2.0, n))   # (i - 1) * j

    def residuals(x):
        return A @ x - 1.0

    def jacobian(x):
        return A.copy()

    xstar = np.zeros(n)
    xstar[1] = 1.5 / (2 * m - 3)
    return Problem("linear_rank1_zero", n, m, np.ones(n), residuals, jacobian,
                   fstar=(m * m + 3 * m - 6) / (2.0 * (2 * m - 3)), xstar=xstar,
                   notes="Minimized on the whole set sum_{j=2}^{n-1} j x_j = 3 / (2m - 3).", number=34)


# --- 35 ----------------------------------------------------------------------

_CHEBYQUAD_FSTAR = {8: 3.51687e-3, 10: 6.50395e-3}


@_register("chebyquad")
def chebyquad(n=8, m=None):
    """Chebyquad function (35), n >= 1, m >= n (default m = n; the paper's minima are for m = n)."""
    m = n if m is None else m
    _check(n >= 1 and m >= n, "chebyquad needs 1 <= n <= m")
    i = np.arange(1, m + 1)
    # Integral over [0, 1] of the shifted Chebyshev polynomial T_i(2x - 1): zero for odd i.
    integrals = np.zeros(m)
    integrals[1::2] = -1.0 / (i[1::2] ** 2 - 1.0)

    def polynomials(x):
        """T_i(2x_j - 1) and its x-derivative, shape (m, n), by the three-term recurrence."""
        y = 2.0 * x - 1.0
        T, dT = _zeros(x, (m + 1, n)), _zeros(x, (m + 1, n))
        T[0] = 1.0
        T[1] = y
        dT[1] = 2.0
        for k in range(1, m):
            T[k + 1] = 2.0 * y * T[k] - T[k - 1]
            dT[k + 1] = 4.0 * T[k] + 2.0 * y * dT[k] - dT[k - 1]
        return T[1:], dT[1:]

    def residuals(x):
        return polynomials(x)[0].mean(axis=1) - integrals

    def jacobian(x):
        return polynomials(x)[1] / n

    fstar = None
    if m == n:
        fstar = 0.0 if n <= 7 or n == 9 else _CHEBYQUAD_FSTAR.get(n)
    return Problem("chebyquad", n, m, np.arange(1, n + 1) / (n + 1.0), residuals, jacobian, fstar=fstar,
                   number=35)
