"""Small data sets shipped with fastopt, for examples, tests and benchmarks.

The files live in ``fastopt/datasets/data/`` and are read with
:mod:`importlib.resources`, so they load the same from a source tree, an
installed wheel or a zip archive.

Digits
------
:func:`load_digits` returns 1797 handwritten digits as 8 x 8 images: the
test part of the UCI *Optical Recognition of Handwritten Digits* data set by
E. Alpaydin and C. Kaynak (1998), https://archive.ics.uci.edu/dataset/80
(DOI 10.24432/C50P49), licensed under CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/).  ``data/README.md`` next to
the file describes it and its licence; please cite the authors when you use it.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import DTypeLike, NDArray

__all__ = ["load_digits"]

DIGITS_FILE = "digits.csv.gz"
DIGITS_SHAPE = (1797, 65)  # 64 pixel counts, then the label


def load_digits(dtype: DTypeLike = np.float32) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """The bundled handwritten digits: 1797 images of 8 x 8 pixel counts and their labels.

    Each 32 x 32 black-and-white scan of a handwritten digit was reduced to
    8 x 8 by counting the set pixels in each 4 x 4 block, so every value is
    an integer from 0 to 16.  The ten classes are about equally common
    (174 to 183 images each).  Source: E. Alpaydin and C. Kaynak (1998),
    UCI Machine Learning Repository, https://archive.ics.uci.edu/dataset/80 ,
    CC BY 4.0 (see :mod:`fastopt.datasets`).

    Parameters
    ----------
    dtype : data-type, default numpy.float32
        Element type of ``X``: a floating or integer type (the counts fit
        ``uint8``).  Pixels are *not* scaled; divide by 16 for values in [0, 1].

    Returns
    -------
    X : numpy.ndarray, shape (1797, 64)
        One image per row, pixels in row-major order (``X[i].reshape(8, 8)``
        is the image).
    y : numpy.ndarray of int64, shape (1797,)
        The digit each image shows, 0 to 9.

    Both arrays are new on every call: changing them does not change what
    the next call returns.

    Examples
    --------
    >>> from fastopt.datasets import load_digits
    >>> X, y = load_digits()
    >>> X.shape, X.dtype, y.shape, y.dtype
    ((1797, 64), dtype('float32'), (1797,), dtype('int64'))
    >>> int(X.max()), sorted(set(y.tolist())) == list(range(10))
    (16, True)
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "fiu":
        raise TypeError(f"dtype must be a floating or integer type, got {dtype}")
    table = _digits_table()
    return table[:, :64].astype(dtype), table[:, 64].astype(np.int64)


@lru_cache(maxsize=None)
def _digits_table() -> NDArray[np.uint8]:
    """Parse the CSV once; the read-only uint8 table is shared by every call."""
    source = resources.files(__name__).joinpath("data").joinpath(DIGITS_FILE)
    with source.open("rb") as raw, gzip.open(raw, "rt", encoding="ascii") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.uint8, ndmin=2)
    if table.shape != DIGITS_SHAPE or table[:, :64].max() > 16 or table[:, 64].max() > 9:
        raise OSError(f"{DIGITS_FILE} is damaged: expected {DIGITS_SHAPE} rows x columns of "
                      f"pixel counts 0..16 and labels 0..9, got shape {table.shape}")
    table.flags.writeable = False
    return table
