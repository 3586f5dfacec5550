"""Where the files for compiling against fastopt are: :func:`get_include`."""
from __future__ import annotations

import os

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def get_include() -> list[str]:
    """Directories to compile other extension modules against fastopt with.

    fastopt ships what compiled code needs to call its update-rule kernels
    with no Python in the loop: ``.pxd`` declarations for Cython
    (``cimport fastopt.cython_kernels``) and a C header, ``fastopt.h``.  Pass
    the returned directories both to Cython's include path and to the C
    compiler's; each tool ignores the one it does not need.

    Returns
    -------
    list of str
        Two absolute paths: the directory that holds the ``fastopt`` package
        (where Cython finds ``fastopt/cython_kernels.pxd``), then the directory
        that holds ``fastopt.h`` (``fastopt/include`` in an installed package,
        ``csrc`` in a source checkout).

    See Also
    --------
    numpy.get_include : the same for NumPy's C headers.

    Examples
    --------
    In a ``setup.py`` that builds a Cython module calling fastopt's kernels:

    >>> import fastopt
    >>> from setuptools import Extension
    >>> from Cython.Build import cythonize
    >>> ext = Extension("mystep", ["mystep.pyx"], include_dirs=fastopt.get_include())
    >>> modules = cythonize([ext], include_path=fastopt.get_include())  # doctest: +SKIP
    """
    header_dir = os.path.join(_PACKAGE, "include")
    if not os.path.isfile(os.path.join(header_dir, "fastopt.h")):
        # A source checkout (in-place or editable build): the header's home is csrc/.
        header_dir = os.path.join(os.path.dirname(os.path.dirname(_PACKAGE)), "csrc")
    return [os.path.dirname(_PACKAGE), header_dir]
