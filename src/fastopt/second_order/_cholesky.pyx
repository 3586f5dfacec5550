# cython: language_level=3
"""Cholesky factor and solve through SciPy's LAPACK (``scipy.linalg.cython_lapack``), without the GIL.

SciPy exports its LAPACK as function pointers, so fastopt calls the same
library SciPy links (OpenBLAS or MKL) with no link step of its own.  The
matrices are symmetric and C-ordered; LAPACK reads them column-major, so its
lower triangle is the C array's upper one, which for a symmetric matrix is
the same numbers.
"""
from scipy.linalg.cython_lapack cimport dpotrf, dpotrs


def cholesky_in_place(double[:, ::1] a not None):
    """Factor the symmetric positive definite ``a`` in place (LAPACK dpotrf).

    Returns LAPACK's ``info``: 0 on success, k > 0 when the leading minor
    of order k is not positive definite (the factorization stopped there;
    ``a`` then holds a partial factor and must be refreshed before reuse).
    """
    cdef int n = <int>a.shape[0], lda = n, info = 0
    cdef char uplo = b"L"
    if a.shape[1] != a.shape[0]:
        raise ValueError(f"a must be square, got shape {(a.shape[0], a.shape[1])}")
    if n == 0:
        return 0
    with nogil:
        dpotrf(&uplo, &n, &a[0, 0], &lda, &info)
    return info


def cholesky_solve(const double[:, ::1] factor not None, double[::1] b not None):
    """Solve ``A x = b`` in place in ``b``, given ``factor`` from :func:`cholesky_in_place` on A."""
    cdef int n = <int>factor.shape[0], nrhs = 1, lda = n, ldb = n, info = 0
    cdef char uplo = b"L"
    if factor.shape[1] != factor.shape[0] or b.shape[0] != factor.shape[0]:
        raise ValueError("factor must be n x n and b of length n")
    if n == 0:
        return
    with nogil:
        dpotrs(&uplo, &n, &nrhs, <double*>&factor[0, 0], &lda, &b[0], &ldb, &info)
    if info != 0:
        raise ValueError(f"LAPACK dpotrs refused argument {-info}")
