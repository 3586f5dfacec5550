"""Cross-rank agreement: every collective's checks pass on all ranks, or every rank raises the same error.

See "Collectives and errors" in :mod:`fastopt.distributed`.  :func:`agree`
is the quick exchange every collective starts with; :func:`_disagree`,
the slow path, works out what went wrong; :func:`failure` words one
rank's error as every rank raises it.
"""
from __future__ import annotations

import functools
import hashlib
import math
import struct
from typing import TYPE_CHECKING, Any

from fastopt.distributed._comm import MPI

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn


def _short(value: object, limit: int = 120) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def digest(value: object) -> int:
    """A 62-bit digest of ``repr(value)``: the same on every rank and in every run (unlike ``hash``)."""
    raw = hashlib.blake2b(repr(value).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little") >> 2


@functools.lru_cache(maxsize=512)
def _cached_digest(value: object) -> int:
    return digest(value)


def _signature_digest(signature: object) -> int:
    """:func:`digest` of a signature, from a cache when the signature is hashable.

    The cache is keyed by equality, so it needs the values of a field to
    have one type (``("average", True)`` never ``("average", 1)``): the
    signatures built in this module do.
    """
    try:
        return _cached_digest(signature)
    except TypeError:  # unhashable (a list of dict keys, say)
        return digest(signature)


#: Error classes kept when one rank's error is raised on all; others become RuntimeError.
_ERRORS: dict[str, type[Exception]] = {"TypeError": TypeError, "ValueError": ValueError}
#: One rank's part of the quick exchange in :func:`agree`: failed, call digest, signature digest, value to sum.
_VOTE = struct.Struct("=qqqd")


def agree(comm: MPI.Comm, what: str, build: Callable[[], tuple[Any, ...]], *,
          details: Callable[[], Sequence[tuple[str, Any]]] | None = None, total: bool = False) -> Any:
    """Run the local checks ``build()`` on every rank; go on only if all ranks passed them and agree.

    Every collective here starts with this call, before any data moves.
    Each rank sends 32 bytes (an ``Allgather``: failed or not, a digest of
    ``what``, a digest of its signature, and the value to sum); when no
    rank failed and all digests match, that is the only communication.
    Otherwise a second exchange (an ``allgather`` of the error messages and
    signatures) works out what went wrong, and every rank raises the same
    exception with the same message:

    * a rank whose ``build()`` raised: ``<what> failed on rank <r>:
      <Class>: <message>`` (the class kept for TypeError and ValueError,
      RuntimeError otherwise; on the failing rank the original exception is
      its ``__cause__``).  On a one-rank communicator the original
      exception is raised as it is;
    * ranks in different calls (``what`` differs): RuntimeError naming the
      call of every rank;
    * fields of the signature that differ: ValueError ``<what>: <field>
      differs across ranks (<value> on rank(s) ...; ...)`` for each.

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
    what : str
        The call, as the messages name it.
    build : callable
        Local checks, no communication.  Returns ``(result, signature)``,
        or ``(result, signature, value)`` with ``total``.  ``signature`` is
        a tuple of ``(field, value)`` pairs that must be equal (``repr``)
        on every rank, with values of one type per field.
    details : callable, optional
        Pairs that name what differs better than ``signature`` (which may
        hold a digest of them); called only when the digests differ.
    total : bool, default False
        Also return the sum over the ranks of ``value`` (a float), rounded
        once (``math.fsum``): the same float on every rank.

    Returns
    -------
    result, or (result, total)
    """
    result: Any = None
    signature: Any = None
    error: Exception | None = None
    value = 0.0
    try:
        if total:
            result, signature, value = build()
        else:
            result, signature = build()
        code = _signature_digest(signature)
    except Exception as exc:  # noqa: BLE001 - raised below, on every rank alike
        error, code = exc, 0
    if comm.Get_size() == 1:
        if error is not None:
            raise error
        return (result, float(value)) if total else result
    size = comm.Get_size()
    vote = _VOTE.pack(error is not None, _cached_digest(what), code, value)
    votes = bytearray(_VOTE.size * size)
    comm.Allgather([vote, MPI.INT64_T], [votes, MPI.INT64_T])  # the double travels as its 8 bytes
    if error is not None or votes != vote * size:  # else every rank sent these bytes: all passed, and agree
        words = memoryview(votes).cast("q")
        if any(words[0::4]) or words[1::4].tobytes() != vote[8:16] * size \
                or words[2::4].tobytes() != vote[16:24] * size:
            _disagree(comm, what, error, signature if details is None or error is not None else details)
        value = math.fsum(memoryview(votes).cast("d")[3::4])
    elif value:
        value *= size  # (fsum of ``size`` equal values, without the round trip through memoryview)
    return (result, value) if total else result


def _disagree(comm: MPI.Comm, what: str, error: Exception | None, signature: Any) -> NoReturn:
    """The slow path of :func:`agree`: find out what went wrong on which rank and raise it everywhere."""
    report = None if error is None else (type(error).__name__, str(error))
    if report is None and callable(signature):
        try:
            signature = signature()
        except Exception as exc:  # noqa: BLE001 - as in agree
            error, report = exc, (type(exc).__name__, str(exc))
    gathered = comm.allgather((what, report, tuple(signature) if report is None else ()))
    failed = [(rank, r) for rank, (_, r, _) in enumerate(gathered) if r is not None]
    if failed:
        cls, message = failure(what, failed)
        raise cls(message) from error
    calls = [call for call, _, _ in gathered]
    if len(set(calls)) > 1:
        raise RuntimeError(f"the ranks are in different calls ({_by_value(calls, str)}); every rank must make "
                           "the same collective calls in the same order")
    signatures = [dict(pairs) for _, _, pairs in gathered]
    fields = list(dict.fromkeys(field for _, _, pairs in gathered for field, _ in pairs))
    differences = []
    for field in fields:
        values = [pairs.get(field, "(absent)") for pairs in signatures]
        if any(repr(v) != repr(values[0]) for v in values):
            differences.append(f"{field} differs across ranks ({_by_value(values, _short)})")
    if not differences:  # the digests differ, but not the pairs sent: a signature out of date
        differences.append("the ranks' settings differ, but their details do not show how")
    raise ValueError(f"{what}: {', and '.join(differences)}")


def _by_value(values: Sequence[Any], show: Callable[[Any], str]) -> str:
    """``"<value> on rank(s) ...; ..."``: the ranks grouped by the value they hold, in rank order."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for rank, value in enumerate(values):
        groups.setdefault(repr(value), (value, []))[1].append(rank)
    return "; ".join(f"{show(value)} on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"
                     for value, ranks in groups.values())


def failure(what: str, failed: Sequence[tuple[int, tuple[str, str]]]) -> tuple[type[Exception], str]:
    """(class, message) for the errors ``[(rank, (class name, message)), ...]`` of the failing ranks."""
    groups: dict[tuple[str, str], list[int]] = {}
    for rank, report in failed:
        groups.setdefault(report, []).append(rank)
    parts = "; ".join(f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}: {kind}: {message}"
                      for (kind, message), ranks in groups.items())
    return _ERRORS.get(failed[0][1][0], RuntimeError), f"{what} failed on {parts}"
