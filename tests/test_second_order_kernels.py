"""The quasi-Newton kernels (float64) against NumPy, and the same bits for any thread count."""
import numpy as np
import pytest

from conftest import SIZES, same_for_all_threads
from fastopt.second_order._cholesky import cholesky_in_place, cholesky_solve
from fastopt.second_order._vectors import (bfgs_matvecs, bfgs_update, combine, dot, lbfgs_direction, lbfgs_new_pair,
                                          max_abs, two_loop)


@pytest.mark.parametrize("n", SIZES)
def test_dot_and_max_abs(n, rng):
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    total = same_for_all_threads(lambda t: dot(a, b, t))
    assert total == pytest.approx(float(a @ b), rel=1e-12, abs=1e-12)
    assert same_for_all_threads(lambda t: max_abs(a, t)) == (np.abs(a).max() if n else 0.0)


@pytest.mark.parametrize("n", SIZES)
def test_combine(n, rng):
    x, y, s = (rng.standard_normal(n) for _ in range(3))

    def run(t):
        out = np.empty(n)
        d = combine(out, 0.5, x, -2.0, y, dot_with=s, num_threads=t)
        return np.append(out, d)

    got = same_for_all_threads(run)
    np.testing.assert_array_equal(got[:n], 0.5 * x + -2.0 * y)  # the same two roundings as NumPy
    assert got[n] == pytest.approx(float(s @ got[:n]), rel=1e-12, abs=1e-12)
    q = x.copy()
    assert combine(q, 3.0, q) == 0.0  # in place, no dot requested
    np.testing.assert_array_equal(q, 3.0 * x)


def test_max_abs_sees_nan():
    a = np.zeros(5000)
    a[4321] = np.nan
    assert np.isnan(max_abs(a, 2))


def _dense_lbfgs_inverse(pairs, gamma, n):
    h = gamma * np.eye(n)
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return h


@pytest.mark.parametrize("n", [1, 7, 300])
@pytest.mark.parametrize("stored", [0, 3, 7])
def test_two_loop_is_the_lbfgs_matrix(n, stored, rng):
    m = 5
    a = rng.standard_normal((n, n))
    a = a @ a.T + n * np.eye(n)
    S, Y, rho = np.zeros((m + 1, n)), np.zeros((m + 1, n)), np.zeros(m + 1)
    pairs = []
    for k in range(stored):  # a ring of m + 1 rows keeping the last min(stored, m) pairs
        s = rng.standard_normal(n)
        y = a @ s
        row = k % (m + 1)
        S[row], Y[row], rho[row] = s, y, 1.0 / (s @ y)
        pairs.append((s, y))
    count = min(stored, m)
    oldest = (stored - count) % (m + 1)
    gamma = 0.7
    g = rng.standard_normal(n)

    def run(t):
        d = np.empty(n)
        two_loop(d, g, S, Y, rho, oldest, count, gamma, t)
        return d

    d = same_for_all_threads(run)
    expected = -_dense_lbfgs_inverse(pairs[len(pairs) - count:], gamma, n) @ g
    np.testing.assert_allclose(d, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


def _ring(rng, n, m, stored):
    """A ring of m + 1 rows holding the last min(stored, m) of ``stored`` curvature pairs of an SPD matrix."""
    scale = rng.uniform(1.0, 100.0, n)  # a diagonal Hessian, so large n stays cheap
    S, Y, rho = np.zeros((m + 1, n)), np.zeros((m + 1, n)), np.zeros(m + 1)
    for k in range(stored):
        row = k % (m + 1)
        S[row] = rng.standard_normal(n)
        Y[row] = scale * S[row]
        rho[row] = 1.0 / (S[row] @ Y[row]) if n else 0.0
    count = min(stored, m)
    oldest = (stored - count) % (m + 1)
    rows = np.array([(oldest + j) % (m + 1) for j in range(count)], dtype=np.intp)
    return S, Y, rho, oldest, count, rows


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("stored", [0, 1, 4, 9])
def test_lbfgs_direction_is_the_two_loop_recursion(n, stored, rng):
    m = 5
    S, Y, rho, oldest, count, rows = _ring(rng, n, m, stored)
    g = rng.standard_normal(n)
    SY, YY, gS, gY = S @ Y.T, Y @ Y.T, S @ g, Y @ g

    def run(t):
        d = np.empty(n)
        slope = lbfgs_direction(d, g, S, Y, rho, SY, YY, gS, gY, rows, 0.7, t)
        return np.append(d, slope)

    got = same_for_all_threads(run)
    expected = np.empty(n)
    expected_slope = two_loop(expected, g, S, Y, rho, oldest, count, 0.7)
    scale = np.abs(expected).max() if n else 1.0
    np.testing.assert_allclose(got[:n], expected, rtol=1e-10, atol=1e-12 * scale)
    assert got[n] == pytest.approx(float(g @ got[:n]), rel=1e-12, abs=1e-300)  # the slope of the d stored
    assert got[n] == pytest.approx(expected_slope, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("n", SIZES)
def test_lbfgs_new_pair(n, rng):
    m = 4
    S0, Y0, _, oldest, count, rows = _ring(rng, n, m, 6)
    new = (oldest + count) % (m + 1)
    rows = np.append(rows, new).astype(np.intp)
    d, g_new, g_old = (rng.standard_normal(n) for _ in range(3))
    if n:
        g_new[n // 2] = -7.5  # the largest |g_new|

    def run(t):
        S, Y, dots = S0.copy(), Y0.copy(), np.empty((5, len(rows)))
        gmax = lbfgs_new_pair(S, Y, new, rows, d, 0.25, g_new, g_old, dots, t)
        return np.concatenate([S.ravel(), Y.ravel(), dots.ravel(), [gmax]])

    got = same_for_all_threads(run)
    size = S0.size
    S, Y = got[:size].reshape(S0.shape), got[size:2 * size].reshape(S0.shape)
    dots, gmax = got[2 * size:-1].reshape(5, len(rows)), got[-1]
    s, y = 0.25 * d, g_new - g_old
    np.testing.assert_array_equal(S[new], s)  # the same roundings as NumPy
    np.testing.assert_array_equal(Y[new], y)
    others = [r for r in range(m + 1) if r != new]
    np.testing.assert_array_equal(S[others], S0[others])  # no other row touched
    np.testing.assert_array_equal(Y[others], Y0[others])
    expected = np.array([Y[rows] @ s, S[rows] @ y, Y[rows] @ y, S[rows] @ g_new, Y[rows] @ g_new])
    np.testing.assert_allclose(dots, expected, rtol=1e-10, atol=1e-10 * max(1.0, np.sqrt(n)))
    assert gmax == (7.5 if n else 0.0)
    if n:
        g_new[0] = np.nan
        assert np.isnan(lbfgs_new_pair(S0.copy(), Y0.copy(), new, rows, d, 1.0, g_new, g_old,
                                       np.empty((5, len(rows))), 2))


@pytest.mark.parametrize("n", [1, 2, 7, 64, 511])
def test_lbfgs_new_pair_sums_in_two_lanes(n, rng):
    """Within a chunk each product is two running sums, even and odd elements (an odd last element joins
    the even one), added at the end: the order csrc/fastopt_pair_dots.h promises on every compiler."""
    S, Y = rng.standard_normal((2, n)), rng.standard_normal((2, n))
    d, g_new, g_old = (rng.standard_normal(n) for _ in range(3))
    dots = np.empty((5, 1))
    lbfgs_new_pair(S, Y, 1, np.array([0], dtype=np.intp), d, 0.5, g_new, g_old, dots, 1)
    s, y = 0.5 * d, g_new - g_old

    def two_lanes(a, b):
        lanes = [0.0, 0.0]
        for i in range(n - n % 2):
            lanes[i % 2] += float(a[i]) * float(b[i])
        if n % 2:
            lanes[0] += float(a[n - 1]) * float(b[n - 1])
        return lanes[0] + lanes[1]

    expected = [two_lanes(s, Y[0]), two_lanes(y, S[0]), two_lanes(y, Y[0]), two_lanes(g_new, S[0]),
                two_lanes(g_new, Y[0])]
    assert dots[:, 0].tolist() == expected


@pytest.mark.parametrize("n", [0, 1, 7, 200])
def test_bfgs_kernels(n, rng):
    a = rng.standard_normal((n, n))
    h0 = a @ a.T + np.eye(n)
    g, y, s = (rng.standard_normal(n) for _ in range(3))

    def products(t):
        hg, hy = np.empty(n), np.empty(n)
        bfgs_matvecs(h0, g, y, hg, hy, t)
        return np.concatenate([hg, hy])

    got = same_for_all_threads(products)
    np.testing.assert_allclose(got, np.concatenate([h0 @ g, h0 @ y]), rtol=1e-12, atol=1e-12)
    hy = h0 @ y

    def update(t):
        h = h0.copy()
        bfgs_update(h, s, hy, 0.3, 0.2, t)
        return h

    h = same_for_all_threads(update)
    np.testing.assert_allclose(h, h0 + 0.3 * np.outer(s, s) - 0.2 * (np.outer(hy, s) + np.outer(s, hy)),
                               rtol=1e-12, atol=1e-12)


def test_kernels_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="y has 3 elements, expected 4"):
        combine(np.zeros(4), 1.0, np.zeros(4), 1.0, np.zeros(3))
    with pytest.raises(ValueError, match="do not fit"):
        two_loop(np.zeros(2), np.zeros(2), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), 0, 4, 1.0)
    ring, vec = np.zeros((3, 2)), np.zeros(2)
    with pytest.raises(ValueError, match="not a row of the history"):
        lbfgs_new_pair(ring, ring.copy(), 3, np.array([0], dtype=np.intp), vec, 1.0, vec, vec, np.zeros((5, 1)))
    with pytest.raises(ValueError, match="dots must have shape"):
        lbfgs_new_pair(ring, ring.copy(), 2, np.array([0, 2], dtype=np.intp), vec, 1.0, vec, vec, np.zeros((5, 1)))
    with pytest.raises(ValueError, match="S and Y must both be"):
        lbfgs_direction(vec, vec, ring, np.zeros((3, 3)), np.zeros(3), np.zeros((3, 3)), np.zeros((3, 3)),
                        np.zeros(3), np.zeros(3), np.array([0], dtype=np.intp), 1.0)
    with pytest.raises(ValueError, match="not a row of the history"):
        lbfgs_direction(vec, vec, ring, ring.copy(), np.zeros(3), np.zeros((3, 3)), np.zeros((3, 3)),
                        np.zeros(3), np.zeros(3), np.array([5], dtype=np.intp), 1.0)
    with pytest.raises(ValueError, match="square"):
        bfgs_update(np.zeros((2, 3)), np.zeros(2), np.zeros(2), 1.0, 1.0)


def test_cholesky(rng):
    a = rng.standard_normal((6, 6))
    spd = a @ a.T + np.eye(6)
    factor = spd.copy()
    assert cholesky_in_place(factor) == 0
    b = rng.standard_normal(6)
    x = b.copy()
    cholesky_solve(factor, x)
    np.testing.assert_allclose(spd @ x, b, rtol=1e-10)
    indefinite = np.diag([1.0, -1.0, 2.0])
    assert cholesky_in_place(indefinite) == 2  # LAPACK's info: the failing leading minor


_PAIR_DOTS_PROGRAM = r"""
#include <stdio.h>
#include "fastopt_pair_dots.h"
static double next(unsigned long long* state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 4503599627370496.0 - 1.0;  /* 53 random bits, in [-1, 1) */
}
int main(void)
{
    static double v[5][600];
    unsigned long long state = 42;
    const ptrdiff_t sizes[] = {1, 2, 7, 64, 511};
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < 600; i++)
            v[k][i] = next(&state) * (k + 1) * 1e3;
    for (int s = 0; s < 5; s++) {
        double out[5];
        fastopt_five_dots(v[0], v[1], v[2], v[3], v[4], 3, 3 + sizes[s], out);
        printf("%a %a %a %a %a\n", out[0], out[1], out[2], out[3], out[4]);
    }
    return 0;
}
"""


def test_pair_dots_vector_and_scalar_paths_give_the_same_bits(tmp_path):
    """csrc/fastopt_pair_dots.h has a vector path (GCC/Clang) and a scalar one (other compilers): compiled
    with the build's floating-point flags, both must print the same sums."""
    import shutil
    import subprocess
    import sysconfig
    from pathlib import Path

    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) here")
    include = Path(__file__).resolve().parents[1] / "csrc"
    if not (include / "fastopt_pair_dots.h").exists():
        pytest.skip("csrc/ is not beside the tests (an installed copy)")
    source = tmp_path / "pair_dots.c"
    source.write_text(_PAIR_DOTS_PROGRAM)
    outputs = []
    for extra in ([], ["-DFASTOPT_PAIR_DOTS_SCALAR"]):
        binary = tmp_path / f"pair_dots{len(outputs)}"
        subprocess.run([compiler, "-O3", "-ffp-contract=off", "-fno-math-errno", "-std=c99", f"-I{include}", *extra,
                        str(source), "-o", str(binary)], check=True)
        outputs.append(subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 5
