"""fastopt.minimize against scipy.optimize.minimize: wall time per iteration, the user's function apart.

    python benchmarks/second_order.py [--repeats 3] [--quick] [--peers-only] [--peer-iters 60]

Each case runs both libraries for the same number of iterations from the
same start, interleaved, ``--repeats`` times, and reports medians of:
the time per iteration, the part of it spent inside the user's function
(timed by a wrapper), and the rest, the method's own overhead, which is
what the libraries differ in.  Cases:

* L-BFGS vs L-BFGS-B on an ill-conditioned quadratic, n = 10**6
  (f = sum d_i x_i**2 / 2, d log-spaced over [1, 1e4]), and on the
  extended Rosenbrock function, n = 10**4;
* dense BFGS vs SciPy's BFGS on the extended Rosenbrock function, n = 1000;
* Newton vs SciPy's trust-exact (both given the exact, dense Hessian) on the
  extended Rosenbrock function, n = 1000;
* L-BFGS peers on the quadratic, n = 10**6, m = 10, ``--peer-iters``
  iterations each: fastopt as it runs by default, fastopt with
  ``blas_threads=False`` (without its remedy for the BLAS threads, below),
  SciPy's L-BFGS-B and liblbfgs (the PyLBFGS
  package, module ``lbfgs``; skipped with a note when it is not
  installed), interleaved.  liblbfgs's function writes the gradient into
  the array it is given (its API); the others return a new one.  ``nit``
  and ``nfev`` are reported for each (liblbfgs's iterations are counted
  by its progress callback).

The user's functions call BLAS (``x @ y``), whose worker threads keep
spinning for about 0.1 s after each call and compete with the minimizers'
own threads (both libraries' BLAS calls and fastopt's OpenMP kernels) on a
machine with few cores.  fastopt's L-BFGS sees this by itself: when its own
passes dominate the first 10 iterations it limits BLAS to one thread for the
rest of the solve (option ``blas_threads``; the peers table shows it with and
without).  Run it twice to see the environment's side too: as is, and with
``OPENBLAS_THREAD_TIMEOUT=4`` in the environment (see the README, "Threads").
"""
import argparse
import os
import statistics
import time
import warnings

import numpy as np
from scipy import optimize

import fastopt


def quadratic(n):
    d = np.logspace(0, 4, n)

    def fun(x):
        dx = d * x
        return 0.5 * float(x @ dx), dx

    return fun, np.ones(n), None


def extended_rosenbrock(n):
    def fun(x):
        odd, even = x[0::2], x[1::2]
        r1, r2 = 10 * (even - odd ** 2), 1 - odd
        g = np.empty_like(x)
        g[0::2] = -40 * odd * r1 - 2 * r2
        g[1::2] = 20 * r1
        return float(r1 @ r1 + r2 @ r2), g

    def hess(x):
        odd, even = x[0::2], x[1::2]
        h = np.zeros((n, n))
        i = np.arange(0, n, 2)
        h[i, i] = 1200 * odd ** 2 - 400 * even + 2
        h[i, i + 1] = h[i + 1, i] = -400 * odd
        h[i + 1, i + 1] = 200
        return h

    return fun, np.tile([-1.2, 1.0], n // 2), hess


class Timed:
    """The user's function, with the time spent inside it added up."""

    def __init__(self, fun):
        self.fun, self.seconds = fun, 0.0

    def __call__(self, x, *args):
        start = time.perf_counter()
        try:
            return self.fun(x, *args)
        finally:
            self.seconds += time.perf_counter() - start


def run(library, method, problem, iters, **extra):
    fun, x0, hess = problem
    timed = Timed(fun)
    timed_hess = Timed(hess) if hess is not None else None
    if library == "fastopt":
        options = dict(maxiter=iters, gtol=0.0) | (dict(ftol=0.0) if method == "L-BFGS" else {}) | extra
        call = lambda: fastopt.minimize(timed, x0, jac=True, hess=timed_hess, method=method, options=options)
    else:
        options = dict(maxiter=iters, gtol=0.0) | (dict(ftol=0.0, maxfun=10 ** 9) if method == "L-BFGS-B" else {})
        call = lambda: optimize.minimize(timed, x0, jac=True, hess=timed_hess, method=method, options=options)
    start = time.perf_counter()
    res = call()
    total = time.perf_counter() - start
    user = timed.seconds + (timed_hess.seconds if timed_hess else 0.0)
    return dict(total=total, user=user, nit=max(res.nit, 1), nfev=res.nfev, fun=res.fun)


def run_liblbfgs(n, iters, m=10):
    """liblbfgs (PyLBFGS) on the quadratic for ``iters`` iterations; None when it is not installed."""
    try:
        import lbfgs
    except ImportError:
        return None
    d = np.logspace(0, 4, n)
    seconds, counts = [0.0], dict(nfev=0, nit=0)

    def fun(x, g):
        start = time.perf_counter()
        np.multiply(d, x, out=g)
        f = 0.5 * float(x @ g)
        seconds[0] += time.perf_counter() - start
        counts["nfev"] += 1
        return f

    def progress(x, g, fx, xnorm, gnorm, step, k, ls):
        counts["nit"] = k
        counts["fun"] = fx

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "reaches the maximum number of iterations"
        lbfgs.fmin_lbfgs(fun, np.ones(n), progress=progress, m=m, epsilon=0.0, max_iterations=iters)
    total = time.perf_counter() - start
    return dict(total=total, user=seconds[0], nit=max(counts["nit"], 1), nfev=counts["nfev"], fun=counts["fun"])


def peers(n, iters, repeats):
    """fastopt, SciPy and liblbfgs interleaved on the quadratic; a table of medians per iteration."""
    problem = quadratic(n)
    samples = {"fastopt": [], "fastopt, BLAS left alone (blas_threads=False)": [], "SciPy L-BFGS-B": [], "liblbfgs": []}
    for _ in range(repeats):
        samples["fastopt"].append(run("fastopt", "L-BFGS", problem, iters))
        samples["fastopt, BLAS left alone (blas_threads=False)"].append(run("fastopt", "L-BFGS", problem, iters, blas_threads=False))
        samples["SciPy L-BFGS-B"].append(run("scipy", "L-BFGS-B", problem, iters))
        peer = run_liblbfgs(n, iters)
        if peer is not None:
            samples["liblbfgs"].append(peer)
    if not samples["liblbfgs"]:
        print("(liblbfgs skipped: the PyLBFGS package, module `lbfgs`, is not installed)")
        del samples["liblbfgs"]
    med = {lib: {k: statistics.median(s[k] / s["nit"] for s in runs) for k in ("total", "user")}
           for lib, runs in samples.items()}
    ours = med["fastopt"]["total"] - med["fastopt"]["user"]
    print(f"\nL-BFGS peers, quadratic n={n}, m=10, {iters} iterations asked; medians of {repeats} interleaved runs, "
          "per iteration")
    print("| library | nit | nfev | total | in user's function | overhead | overhead / fastopt's |")
    print("|---|---|---|---|---|---|---|")
    for lib, runs in samples.items():
        over = med[lib]["total"] - med[lib]["user"]
        print(f"| {lib} | {runs[0]['nit']} | {runs[0]['nfev']} | {_ms(med[lib]['total'])} | {_ms(med[lib]['user'])} | "
              f"{_ms(over)} | {over / max(ours, 1e-9):.2f}x |")


CASES = [
    ("quadratic n=1e6", lambda: quadratic(10 ** 6), ("L-BFGS", "L-BFGS-B"), 30),
    ("ext. Rosenbrock n=1e4", lambda: extended_rosenbrock(10 ** 4), ("L-BFGS", "L-BFGS-B"), 100),
    ("ext. Rosenbrock n=1000", lambda: extended_rosenbrock(1000), ("BFGS", "BFGS"), 30),
    ("ext. Rosenbrock n=1000", lambda: extended_rosenbrock(1000), ("Newton", "trust-exact"), 8),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller problems, for a smoke test")
    parser.add_argument("--peers-only", action="store_true", help="only the L-BFGS peers table")
    parser.add_argument("--peer-iters", type=int, default=60, help="iterations of the L-BFGS peers case")
    args = parser.parse_args(argv)
    print(f"fastopt {fastopt.__version__}, {fastopt.get_num_threads()} threads; medians of {args.repeats} "
          "interleaved runs; times per iteration; OPENBLAS_THREAD_TIMEOUT="
          f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', '(unset)')}")
    if args.peers_only:
        peers(1000 if args.quick else 10 ** 6, 3 if args.quick else args.peer_iters, args.repeats)
        return
    print("| problem | fastopt | SciPy | iterations | fastopt total | SciPy total | in user's function "
          "(fastopt / SciPy) | overhead fastopt | overhead SciPy | overhead ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, make, (ours, theirs), iters in CASES:
        if args.quick:
            label, iters = label + " (quick)", 3
            make = {"quadratic n=1e6": lambda: quadratic(1000)}.get(label[:-8], lambda: extended_rosenbrock(100))
        problem = make()
        samples = {"fastopt": [], "scipy": []}
        for _ in range(args.repeats):
            samples["fastopt"].append(run("fastopt", ours, problem, iters))
            samples["scipy"].append(run("scipy", theirs, problem, iters))
        med = {lib: {k: statistics.median(s[k] / s["nit"] for s in runs) for k in ("total", "user")}
               for lib, runs in samples.items()}
        over = {lib: m["total"] - m["user"] for lib, m in med.items()}
        nit = f"{samples['fastopt'][0]['nit']} / {samples['scipy'][0]['nit']}"
        print(f"| {label} | {ours} | {theirs} | {nit} | {_ms(med['fastopt']['total'])} | "
              f"{_ms(med['scipy']['total'])} | {_ms(med['fastopt']['user'])} / {_ms(med['scipy']['user'])} | "
              f"{_ms(over['fastopt'])} | {_ms(over['scipy'])} | {over['scipy'] / max(over['fastopt'], 1e-9):.1f}x |")
    peers(1000 if args.quick else 10 ** 6, 3 if args.quick else args.peer_iters, args.repeats)


def _ms(seconds):
    return f"{seconds * 1e3:.2f} ms"


if __name__ == "__main__":
    main()
