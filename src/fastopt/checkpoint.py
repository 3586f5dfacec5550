"""Checkpoints: parameters and optimizer state in one ``.npz`` file, never pickled.

The file is a zip archive of uncompressed ``.npy`` members, as
:func:`numpy.savez` writes them, so ``numpy.load(path, allow_pickle=False)``
reads it.  Each entry below is the member ``<entry>.npy`` and holds one plain
array; strings are 0-d unicode arrays, and a bfloat16 array (parameter or
state) is stored as its uint16 bit patterns (``array.view(numpy.uint16)``;
``numpy.save`` would write bfloat16 as ``|V2`` and lose the type), which
:func:`load` restores bit for bit where the parameter, or the optimizer's
state layout, is bfloat16, and refuses, as any other dtype, elsewhere (the
file does not tell bfloat16 bits from a uint16 array saved as such, so the
latter too reads into a bfloat16 target bit for bit):

* ``format``: ``"fastopt-checkpoint-2"``;
* ``params/<name>``: each parameter (ParamSet tensor names, dict keys, or
  list indices);
* ``optimizer/class``: the optimizer's class name (a wrapper's with the wrapped one's: ``Lookahead(AdamW)``);
* ``optimizer/param_groups``: the groups' hyperparameters and slot indices, as JSON;
* ``optimizer/skipped_steps``: steps refused for non-finite gradients (0-d integer);
* ``optimizer/seed`` (only where the optimizer's state_dict has a ``"seed"``,
  as with stochastic rounding): its seed, a 0-d uint64;
* ``optimizer/train_mode`` (only where the optimizer's state_dict has a
  ``"train_mode"``, as a schedule-free one's): its mode, a 0-d bool;
* ``optimizer/state/<slot>/<key>``: each state array or scalar; ``<slot>`` is
  the slot's index in decimal, ``<key>`` one of the optimizer's state keys.
  A state array is 1-D, shaped and typed as the optimizer's
  ``state_layout(slot)`` says (an optimizer without that method: like the
  slot's parameter): like the parameter, or in the storage ``state_dtype=``
  chose (uint8 codes ``<key>`` with a float32 ``<key>_absmax``, bfloat16, or
  float32), and ``master_param``, the float32 master copy of bfloat16
  parameters.  ``step`` and the other scalars are 0-d;
* ``checksum``: the SHA-256, in 64 lower-case hex digits, of every other
  entry: for each in the order of their names (by code point), the length
  of the name in UTF-8 as 8 little-endian bytes, the name in UTF-8, and the
  SHA-256 digest (32 bytes) of the member's bytes (its ``.npy`` header and data).

The three ``optimizer/`` entries besides the state are all present (with
any state) or all absent (a file saved without an optimizer).  A file
holding any other entry, a duplicate, a compressed or encrypted member,
members that overlap, or a member whose size is not its header plus
exactly the data of its expected shape and dtype is refused.

:func:`load` checks every name against this layout, and every member's
size, shape and dtype from the archive's directory and the ``.npy``
headers alone against what the parameters and optimizer it loads into
expect, before it reads any data; then it reads the data, verifies the
checksum, and only then changes anything.  So a damaged or hostile file is
read at most once and costs no more memory than the caller's own
parameters and state take, and a file that is refused, for whatever
reason, leaves the model and the optimizer exactly as they were.  Resuming
from a checkpoint gives the same bits as training straight through.

Files of version 1 (``"fastopt-checkpoint-1"``, the same layout without
``checksum``) are still read, with every check but the checksum, so damage
to their data cannot be detected.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import secrets
import socket
import stat
import zipfile
from collections.abc import Iterable, Mapping
from typing import IO, TYPE_CHECKING, Any, NoReturn, Union

import numpy as np

from fastopt._locks import holding
from fastopt._storage import BFLOAT16
from fastopt._validation import integer
from fastopt.optim._wrapper import OptimizerWrapper
from fastopt.optim.optimizer import Optimizer
from fastopt.paramset import ParamSet

if TYPE_CHECKING:
    from fastopt._typing import Array

    # What save and load take as parameters: a ParamSet, or arrays by name or in a list or tuple.
    _Params = Union[ParamSet, Mapping[Any, Array], list[Array], tuple[Array, ...]]
    # A path: a str or an os.PathLike.
    _Path = Union[str, "os.PathLike[str]"]

try:
    import fcntl
except ImportError:  # no flock (Windows): temporaries are neither locked nor cleaned up
    fcntl = None  # type: ignore[assignment]

FORMAT = "fastopt-checkpoint-2"
_FORMATS = ("fastopt-checkpoint-1", FORMAT)  # the versions load reads

__all__ = ["CheckpointError", "FORMAT", "load", "save"]

# Caps (in characters) on the text entries.
_MAX_CHARS = {"format": 64, "checksum": 64, "optimizer/class": 256, "optimizer/param_groups": 1 << 22}
_MAX_HEADER = 10_000    # bytes of a .npy header (numpy's own limit when it reads one)
_CHUNK = 1 << 20        # bytes read or hashed at a time
_SMALL = 1 << 16        # data of at most this many bytes is read with its header
_NPY_MAGIC = b"\x93NUMPY"
_SLOT_KEY = re.compile(r"optimizer/state/(0|[1-9][0-9]{0,17})/([A-Za-z_][A-Za-z0-9_]{0,63})")
_OPTIMIZER_ENTRIES = ("optimizer/class", "optimizer/param_groups", "optimizer/skipped_steps")
_SEED = "optimizer/seed"  # optional, with the other optimizer entries
_TRAIN_MODE = "optimizer/train_mode"  # optional too
_BITS = np.dtype(np.uint16)  # how a bfloat16 array is stored


class CheckpointError(ValueError):
    """A file that :func:`load` refuses.

    It is not a fastopt checkpoint, it is damaged (truncated, altered,
    or its checksum does not match), or it does not fit the parameters
    or optimizer it is loaded into (names, shapes, dtypes, optimizer class
    or layout); the message says which, and the underlying exception, if
    any, is chained as ``__cause__``.  Nothing has been changed when it is
    raised.
    """


# ------------------------------------------------------------------------ save
def save(path: _Path, params: _Params, optimizer: Optimizer | OptimizerWrapper | None = None) -> None:
    """Write ``params`` (and ``optimizer``'s state) to the ``.npz`` file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Written exactly at this path (no suffix is added), atomically and
        durably: to a temporary file in the same directory, flushed to disk,
        then renamed over ``path``, and the directory flushed too, so a
        crash or power loss leaves either the old file or the new one.  An
        existing file keeps its permission bits; a new one gets ``0o666``
        less the umask.  Temporary files that an interrupted ``save`` (on
        this host) left in the directory are removed.
    params : ParamSet, or dict/list/tuple of numpy.ndarray
    optimizer : fastopt.optim.Optimizer, optional

    Raises
    ------
    PermissionError
        If ``path`` exists and is not writable by this process (checked as
        :func:`os.access` does); the file is left as it is.
    IsADirectoryError
        If ``path`` is a directory.
    ValueError
        If two parameter names collide, or an array cannot be stored
        without pickle.
    """
    if optimizer is not None:
        _check_optimizer(optimizer)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    named = _named(params)
    mode = _destination_mode(path)
    _remove_stale_temporaries(directory)  # first: they may hold the disk space this save needs
    # A new file is created 0o666 and the kernel applies the umask (or the directory's default ACL);
    # a replacement is written privately, then given the mode of the file it replaces.
    tmp, fd = _create_temporary(directory, 0o666 if mode is None else 0o600)
    try:
        with _holding(named, optimizer):  # no step changes the arrays while they are written (not synced)
            with open(fd, "wb", closefd=False) as fh:
                _write_archive(fh, _entries(params, optimizer))
        os.fsync(fd)
        if mode is not None:
            _chmod(fd, tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    finally:
        os.close(fd)  # and so releases the temporary's lock
    _fsync_directory(directory)


def _entries(params: _Params, optimizer: Any) -> dict[str, Array]:
    """{entry name: array} of a checkpoint, without ``checksum``."""
    entries = {"format": np.array(FORMAT)}
    for name, array in _named(params).items():
        entries[f"params/{name}"] = _stored(np.asarray(array))
    if optimizer is not None:
        snapshot = optimizer.state_dict()
        entries["optimizer/class"] = np.array(_class_name(optimizer))
        entries["optimizer/param_groups"] = np.array(json.dumps(snapshot["param_groups"]))
        entries["optimizer/skipped_steps"] = np.asarray(snapshot["skipped_steps"])
        if "seed" in snapshot:
            entries[_SEED] = np.array(_seed(snapshot["seed"]), np.uint64)
        if "train_mode" in snapshot:
            entries[_TRAIN_MODE] = np.array(bool(snapshot["train_mode"]))
        for index, state in snapshot["state"].items():
            for key, value in state.items():
                name = f"optimizer/state/{index}/{key}"
                if not _SLOT_KEY.fullmatch(name):
                    raise ValueError(f"state {key!r} of slot {index} has a name a checkpoint cannot hold")
                entries[name] = _stored(np.asarray(value))
    for name, cap in _MAX_CHARS.items():
        if name in entries and len(str(entries[name])) > cap:
            raise ValueError(f"{name} takes {len(str(entries[name]))} characters; a checkpoint holds at most {cap}")
    return entries


def _seed(value: object) -> int:
    """The optimizer's seed as an int in [0, 2**64); ValueError (or TypeError) for anything else."""
    seed = integer("the optimizer's seed", value, 0)
    if seed >= 2**64:
        raise ValueError(f"the optimizer's seed must be below 2**64, got {seed}")
    return seed


def _write_archive(fh: IO[bytes], entries: Mapping[str, Array]) -> None:
    """The archive, its members in the order of their names and ``checksum`` last."""
    records = []
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name in sorted(entries):
            digest = hashlib.sha256()
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(_Hashing(member, digest), entries[name], allow_pickle=False)
            records.append((name, digest.digest()))
        with archive.open("checksum.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.array(_checksum(records)), allow_pickle=False)


class _Hashing:
    """A write-only stream that hashes what it passes on."""

    def __init__(self, stream: IO[bytes], digest: Any) -> None:
        self.stream, self.digest = stream, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.stream.write(data)


def _checksum(records: Iterable[tuple[str, bytes]]) -> str:
    """The ``checksum`` entry of (entry name, SHA-256 digest of its member), in the order of the names."""
    outer = hashlib.sha256()
    for name, digest in records:
        encoded = name.encode("utf-8")
        outer.update(len(encoded).to_bytes(8, "little"))
        outer.update(encoded)
        outer.update(digest)
    return outer.hexdigest()


def _destination_mode(path: str) -> int | None:
    """The permission bits of the file ``path`` replaces, or None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not os.access(path, os.W_OK):
        raise PermissionError(errno.EACCES, "the checkpoint exists and is not writable", path)
    return stat.S_IMODE(st.st_mode)


# Temporary files.  A save writes ".fastopt-<host>-<pid>-<random>.tmp" next to
# its destination and holds an exclusive flock on it from just after creating
# it until it is renamed and closed.  The kernel drops that lock when the
# writer exits however it ends (even by SIGKILL), so a temporary of this
# host whose lock is free belongs to no running save: each save removes
# those.  The remover takes the lock itself before unlinking, and a writer
# whose fresh temporary was removed in the moment before it locked it sees
# so (the name no longer leads to its file) and starts again with a new
# name; so a temporary in use is never deleted, whatever the timing.  Only
# this host's temporaries are touched: on a network file system another
# host's lock may not be visible here.  (The pid is for people reading the
# directory; pids get reused, so it decides nothing.)
_TEMP_NAME = re.compile(r"\.fastopt-(?P<host>[A-Za-z0-9._]{1,64})-(?P<pid>[0-9]+)-[0-9a-f]{16}\.tmp")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "localhost"


def _create_temporary(directory: str, mode: int) -> tuple[str, int]:
    """(path, fd) of a new temporary in ``directory``, open for writing and (where possible) locked."""
    while True:
        tmp = os.path.join(directory, f".fastopt-{_host()}-{os.getpid()}-{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        if fcntl is None:
            return tmp, fd
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without locks: no save can lock, so none removes temporaries here
                return tmp, fd
            if _same_file(os.fstat(fd), tmp):
                return tmp, fd
        except BaseException:
            os.close(fd)
            _unlink(tmp)
            raise
        os.close(fd)  # removed as stale before we locked it: take another name


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _same_file(st: os.stat_result, path: str) -> bool:
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _remove_stale_temporaries(directory: str) -> None:
    """Remove this host's fastopt temporaries in ``directory`` that no running save holds; best effort."""
    if fcntl is None:
        return
    host = _host()
    try:
        names = [e.name for e in os.scandir(directory) if e.name.startswith(".fastopt-")]
    except OSError:
        return
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    for name in names:
        match = _TEMP_NAME.fullmatch(name)
        if not match or match["host"] != host:
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, flags)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a save is writing it
                if _same_file(st, path):
                    os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _chmod(fd: int, path: str, mode: int) -> None:
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        os.chmod(path, mode)


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable, where the platform can."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # not openable (Windows, or no read permission): nothing more can be done
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):  # directories not fsync-able here
            raise
    finally:
        os.close(fd)


# ------------------------------------------------------------------------ load
def load(path: _Path, params: _Params, optimizer: Optimizer | OptimizerWrapper | None = None) -> None:
    """Read a checkpoint written by :func:`save` into ``params`` (and ``optimizer``), in place.

    Everything is checked before anything changes (see the module's
    documentation): on any error, ``params`` and ``optimizer`` are left
    exactly as they were.

    Parameters
    ----------
    path : str or os.PathLike
    params : ParamSet, or dict/list/tuple of numpy.ndarray
        Names, shapes and dtypes must be those saved.
    optimizer : fastopt.optim.Optimizer, optional
        Built on the same parameters, of the class saved.  Without it, the
        file's optimizer entries (if any) are checked but not used.  Its
        state arrays are checked against its ``state_layout(slot)`` where it
        has that method; the file's seed and mode, if any, are passed to
        ``load_state_dict`` as ``"seed"`` (an int) and ``"train_mode"`` (a bool).

    Raises
    ------
    CheckpointError
        (a ValueError) If the file is not a fastopt checkpoint, is damaged,
        or does not match ``params`` or ``optimizer`` (names, shapes,
        dtypes, optimizer class or layout, or state that
        ``optimizer.load_state_dict`` refuses, chained as the cause).
    OSError
        If the file cannot be read (FileNotFoundError, PermissionError,
        IsADirectoryError, an I/O error).
    TypeError
        If ``params`` is not a ParamSet or a dict/list/tuple of numpy
        arrays, or ``optimizer`` is not a fastopt optimizer.
    ValueError
        If a parameter in ``params`` is read-only.
    """
    targets = _named(params)
    for name, target in targets.items():
        if not isinstance(target, np.ndarray):
            raise TypeError(f"parameter {name!r} must be a numpy.ndarray, got {type(target).__name__}")
        if not target.flags.writeable:
            raise ValueError(f"parameter {name!r} is read-only")
    if optimizer is not None:
        _check_optimizer(optimizer)
    path = os.fspath(path)
    with open(path, "rb") as fh:  # OSError: the file cannot be read
        source = _Source(fh)
        try:
            arrays, snapshot = _Reader(source, os.fstat(fh.fileno()).st_size, path, targets, optimizer).read()
        except Exception as exc:  # noqa: BLE001 -- whatever a damaged archive makes zipfile or numpy raise
            if source.failure is not None:  # the disk failed, whatever zipfile made of that
                raise source.failure from None
            if isinstance(exc, (CheckpointError, MemoryError)):  # no allocation beyond the targets' sizes fails
                raise
            raise CheckpointError(f"{path} is not a fastopt checkpoint, or is damaged: {_describe(exc)}") from exc
    with _holding(targets, optimizer):  # a step in another thread sees all of the file or none of it
        if optimizer is not None and snapshot is not None:
            try:
                optimizer.load_state_dict(snapshot)
            except Exception as exc:  # noqa: BLE001 -- the snapshot is the file's alone: any refusal is the file's
                raise CheckpointError(f"{path}: the optimizer refuses its state: {exc}") from exc
        for name, array in arrays.items():
            np.copyto(_stored(targets[name]), _stored(array))  # bfloat16 as its bits: exactly those saved


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Source:
    """The opened file, as zipfile reads it; remembers an OSError that reading it raised.

    That is an I/O error, and load raises it as it is, even where zipfile
    has turned it into BadZipFile.
    """

    failure: OSError | None

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.failure = fh, None
        self.name = getattr(fh, "name", None)

    def read(self, n: int = -1) -> bytes:
        try:
            return self.fh.read(n)
        except OSError as exc:
            self.failure = exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()

    def seekable(self) -> bool:
        return True


def _stored_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype a checkpoint holds an array of ``dtype`` in: uint16 for bfloat16 (its bit patterns), else ``dtype``."""
    return _BITS if dtype == BFLOAT16 else dtype


def _stored(array: Array) -> Array:
    """``array`` as a checkpoint holds it: a view in :func:`_stored_dtype` (no copy)."""
    return array.view(_stored_dtype(array.dtype))


class _Spec:
    """What an entry must hold: an exact array, a count, a number, text, or (unknown layout) a 1-D array or a number.

    The ``dtype`` of an exact array is the one it is loaded as; a bfloat16
    array is held as uint16 (see :func:`_stored` and :meth:`restore`).
    """

    def __init__(self, kind: str, shape: Any = None, dtype: Any = None, chars: Any = None) -> None:
        self.kind, self.shape, self.dtype, self.chars = kind, shape, dtype, chars

    def restore(self, value: Array) -> Array:
        """The array read for this entry, as it is loaded: a bfloat16 entry's uint16 bits viewed as bfloat16."""
        return value.view(BFLOAT16) if self.kind == "array" and self.dtype == BFLOAT16 else value

    def check(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> str | None:
        """Refuse a header that does not fit; the error names what was expected."""
        kind = self.kind
        if dtype.hasobject or dtype.itemsize == 0 and kind != "array" or any(n < 0 for n in shape):
            return f"{name} holds {dtype}{list(shape)}, which a checkpoint never does"
        if kind == "array":
            if shape != self.shape or dtype != _stored_dtype(self.dtype):
                bits = " (stored as uint16 bits)" if self.dtype == BFLOAT16 else ""
                return (f"{_what(name)} is {dtype}{list(shape)} in the checkpoint "
                        f"but {self.dtype}{list(self.shape)}{bits} here")
        elif kind == "text":
            if shape != () or dtype.kind != "U" or dtype.itemsize // 4 > self.chars:
                return f"{name} must be a string of at most {self.chars} characters, not {dtype}{list(shape)}"
        elif kind in ("count", "number"):
            kinds = "iu" if kind == "count" else "iuf"
            if shape != () or dtype.kind not in kinds or dtype.itemsize > 8:
                return f"{name} must be a single {'integer' if kind == 'count' else 'number'}, not {dtype}{list(shape)}"
        elif not ((shape == () and dtype.kind in "iuf" and dtype.itemsize <= 8)
                  or (len(shape) == 1 and (dtype.kind == "f" and dtype.itemsize <= 8
                                           or dtype in (_BITS, np.dtype(np.uint8))))):  # kind "state"
            return (f"{name} must be a number or a 1-D float, uint8 (int8 codes) or uint16 (bfloat16) array, "
                    f"not {dtype}{list(shape)}")
        return None


def _state_arrays(optimizer: Any, index: int, param: Array) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """{key: (shape, dtype)} of every state array slot ``index`` (parameter ``param``) of ``optimizer`` may hold.

    As the optimizer's ``state_layout(index)`` gives them (codes, absmax,
    bfloat16 state, the master copy); for an optimizer without that method,
    each of its ``state_arrays`` shaped and typed like the parameter.
    """
    state_layout = getattr(optimizer, "state_layout", None)
    if state_layout is None:
        return dict.fromkeys(optimizer.state_arrays, (param.shape, param.dtype))
    return {key: (tuple(shape), np.dtype(dtype)) for key, (shape, dtype) in state_layout(index).items()}


def _some(names: list[str], shown: int = 10) -> str:
    """A list of names for a message, cut short if long."""
    return str(names) if len(names) <= shown else f"{names[:shown]} and {len(names) - shown} more"


def _what(name: str) -> str:
    if name.startswith("params/"):
        return f"parameter {name[len('params/'):]!r}"
    match = _SLOT_KEY.fullmatch(name)
    return f"state {match[2]!r} of slot {match[1]}" if match else name


class _Reader:
    """One reading of a checkpoint: directory, headers, then data; raises CheckpointError for what it refuses."""

    def __init__(self, source: _Source, size: int, path: str, targets: dict[str, Array], optimizer: Any) -> None:
        self.source, self.size, self.path, self.targets, self.optimizer = source, size, path, targets, optimizer
        # name: what _header found
        self.headers: dict[str, tuple[bytes, tuple[int, ...], bool, np.dtype[Any], bytes | None]] = {}

    def fail(self, message: str) -> NoReturn:
        raise CheckpointError(f"{self.path}: {message}")

    def read(self) -> tuple[dict[str, Array], dict[str, Any] | None]:
        """({parameter name: array}, state_dict for the optimizer or None)."""
        with zipfile.ZipFile(self.source) as archive:
            self.archive = archive
            self.members = self._directory()
            version = self._format()
            specs = self._specs(version)
            for name, spec in specs.items():
                self._header(name, spec)
            keep = {name for name in specs if name.startswith("params/")
                    or (self.optimizer is not None and name.startswith("optimizer/"))}
            values, records = {}, []
            for name in sorted(specs):  # the checksum's order
                digest = hashlib.sha256()
                value = self._data(name, digest, name in keep or name == "checksum")
                if value is not None:
                    values[name] = specs[name].restore(value)
                if name != "checksum":
                    records.append((name, digest.digest()))
        if version != "fastopt-checkpoint-1" and _text(values["checksum"]) != _checksum(records):
            self.fail("the file is damaged: its checksum does not match its content")
        arrays = {name[len("params/"):]: values[name] for name in values if name.startswith("params/")}
        if self.optimizer is None or "optimizer/class" not in values:
            return arrays, None
        state: dict[int, dict[str, Any]] = {}
        for name, value in values.items():
            match = _SLOT_KEY.fullmatch(name)
            if match:
                state.setdefault(int(match[1]), {})[match[2]] = value
        groups = json.loads(_text(values["optimizer/param_groups"]))
        snapshot = {"state": state, "param_groups": groups, "skipped_steps": values["optimizer/skipped_steps"]}
        if _SEED in values:
            snapshot["seed"] = int(values[_SEED][()])
        if _TRAIN_MODE in values:
            snapshot["train_mode"] = bool(values[_TRAIN_MODE][()])
        return arrays, snapshot

    # -- directory: names, member types and sizes, before any member is opened
    def _directory(self) -> dict[str, zipfile.ZipInfo]:
        members = {}
        for info in self.archive.infolist():
            if not info.filename.endswith(".npy"):
                self.fail(f"the archive holds {info.filename!r}, which is not a .npy member of a fastopt checkpoint")
            name = info.filename[:-len(".npy")]
            if name in members:
                self.fail(f"the file is damaged: it holds {name!r} twice")
            if info.flag_bits & 0x1:
                self.fail(f"{name} is encrypted")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                self.fail(f"{name} is compressed; fastopt checkpoints are not")
            members[name] = info
        # Each member (its local header of at least 30 bytes and its name, then its data) must end
        # before the next begins and within the file: so reading them all reads the file at most once.
        infos = sorted(members.values(), key=lambda i: i.header_offset)
        for info, after in zip(infos, infos[1:] + [None]):
            end = info.header_offset + 30 + len(info.filename) + info.file_size
            if after is None and end > self.size:
                self.fail(f"the file is truncated: {info.filename} would end past its end")
            if after is not None and end > after.header_offset:
                self.fail(f"the file is damaged: {info.filename} overlaps {after.filename}")
        return members

    def _format(self) -> str:
        if "format" not in self.members:
            self.fail(f"it is not a fastopt checkpoint ({FORMAT}): it holds no 'format'")
        fmt = _Spec("text", chars=_MAX_CHARS["format"])
        self._header("format", fmt)
        value = _text(self._data("format", hashlib.sha256(), True))
        if value not in _FORMATS:
            self.fail(f"it is not a fastopt checkpoint ({FORMAT}): its format is {value[:64]!r}")
        return value

    def _specs(self, version: str) -> dict[str, _Spec]:
        """{entry: _Spec} of every entry the file holds, once its names are checked against the layout."""
        specs = {"format": _Spec("text", chars=_MAX_CHARS["format"])}
        names = set(self.members) - {"format"}
        if version != "fastopt-checkpoint-1":
            if "checksum" not in names:
                self.fail("the file is damaged: it holds no checksum")
            names.discard("checksum")
            specs["checksum"] = _Spec("text", chars=_MAX_CHARS["checksum"])
        saved = {name[len("params/"):] for name in names if name.startswith("params/")}
        missing, unexpected = sorted(set(self.targets) - saved), sorted(saved - set(self.targets))
        if missing or unexpected:
            self.fail(f"checkpoint parameters do not match: missing {_some(missing)}, unexpected {_some(unexpected)}")
        for key, target in self.targets.items():
            specs[f"params/{key}"] = _Spec("array", target.shape, target.dtype)
        names -= {f"params/{key}" for key in saved}
        optional = [(name, dtype) for name, dtype in ((_SEED, np.uint64), (_TRAIN_MODE, bool)) if name in names]
        for name, dtype in optional:
            names.discard(name)
            specs[name] = _Spec("array", (), np.dtype(dtype))
        slots: dict[int, list[tuple[str, str]]] = {}
        for name in names:
            match = _SLOT_KEY.fullmatch(name)
            if match:
                slots.setdefault(int(match[1]), []).append((match[2], name))
            elif name not in _OPTIMIZER_ENTRIES:
                self.fail(f"the file holds {name!r}, which is not an entry of a fastopt checkpoint")
        present = [name for name in _OPTIMIZER_ENTRIES if name in names]
        if present and len(present) != len(_OPTIMIZER_ENTRIES) or (slots or optional) and not present:
            lacking = sorted(set(_OPTIMIZER_ENTRIES) - set(present))
            self.fail(f"the file is damaged: it holds optimizer state but no {', '.join(lacking)}")
        if not present:
            if self.optimizer is not None:
                self.fail("it holds no optimizer state")
            return specs
        specs["optimizer/class"] = _Spec("text", chars=_MAX_CHARS["optimizer/class"])
        specs["optimizer/param_groups"] = _Spec("text", chars=_MAX_CHARS["optimizer/param_groups"])
        specs["optimizer/skipped_steps"] = _Spec("count")
        optimizer = self.optimizer
        if optimizer is None:
            for index, keys in slots.items():
                for key, name in keys:
                    specs[name] = _Spec("count" if key == "step" else "state")
            return specs
        cls = _class_name(optimizer)
        self._header("optimizer/class", specs["optimizer/class"])
        saved_class = _text(self._data("optimizer/class", hashlib.sha256(), True))
        if saved_class != cls:
            self.fail(f"it holds {saved_class[:256]} state, not {cls}")
        self._header("optimizer/param_groups", specs["optimizer/param_groups"])
        groups = json.loads(_text(self._data("optimizer/param_groups", hashlib.sha256(), True)))
        self._check_groups(groups, optimizer)
        layout = optimizer._layout.slots
        for index, keys in sorted(slots.items()):
            if index >= len(layout):
                self.fail(f"it holds state for slot {index}, but this {cls} has {len(layout)} slots")
            arrays = _state_arrays(optimizer, index, layout[index].param)
            for key, name in keys:
                if key in arrays:
                    specs[name] = _Spec("array", *arrays[key])
                elif key == "step":
                    specs[name] = _Spec("count")
                elif key in optimizer.state_scalars:
                    specs[name] = _Spec("number")
                else:
                    self.fail(f"it holds state {key!r} for slot {index}, which {cls} does not keep")
        return specs

    def _check_groups(self, groups: object, optimizer: Any) -> None:
        """The file's groups hold the optimizer's slots (read before the state: a layout mismatch says so)."""
        if not isinstance(groups, list):
            self.fail(f"the file is damaged: its param_groups are a {type(groups).__name__}, not a list")
        cls, mine = _class_name(optimizer), optimizer.param_groups
        if len(groups) != len(mine):
            self.fail(f"it holds {len(groups)} parameter groups, this {cls} has {len(mine)}")
        for g, (saved, group) in enumerate(zip(groups, mine)):
            if isinstance(saved, dict) and saved.get("params") != group["params"]:
                self.fail(f"param_groups[{g}] holds slots {saved.get('params')} in the file but {group['params']} "
                          "here; was the optimizer built on the same parameters?")

    # -- members
    def _read_exactly(self, member: IO[bytes], n: int, name: str) -> bytes:
        data = member.read(n)
        if len(data) != n:
            self.fail(f"the file is truncated: {name} ends early")
        return data

    def _open(self, name: str) -> Any:
        return self.archive.open(self.members[name])

    def _header(self, name: str, spec: _Spec) -> tuple[bytes, tuple[int, ...], bool, np.dtype[Any], bytes | None]:
        """(header bytes, shape, fortran_order, dtype, member bytes or None) of member ``name``.

        The header is checked against ``spec`` and the member's size before
        anything else of it is read; a small member is then read whole.
        """
        if name in self.headers:
            return self.headers[name]
        info = self.members[name]
        with self._open(name) as member:
            raw = self._read_exactly(member, len(_NPY_MAGIC) + 2, name)
            if raw[:len(_NPY_MAGIC)] != _NPY_MAGIC:
                self.fail(f"the file is damaged: {name} is not a .npy array")
            version = (raw[-2], raw[-1])
            if version not in ((1, 0), (2, 0)):
                self.fail(f"the file is damaged: {name} has a .npy header of unknown version {version}")
            length = self._read_exactly(member, 2 if version == (1, 0) else 4, name)
            size = int.from_bytes(length, "little")
            if size > _MAX_HEADER or len(raw) + len(length) + size > info.file_size:
                self.fail(f"the file is damaged: {name} claims a .npy header of {size} bytes")
            raw += length + self._read_exactly(member, size, name)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(io.BytesIO(raw[len(_NPY_MAGIC) + 2:]))
            problem = spec.check(name, shape, dtype)
            if problem:
                self.fail(problem)
            nbytes = math.prod(shape) * dtype.itemsize
            if info.file_size != len(raw) + nbytes:
                self.fail(f"the file is damaged: {name} takes {info.file_size} bytes, not the {len(raw) + nbytes} "
                          f"that its header and {dtype}{list(shape)} take")
            whole = None
            if nbytes <= _SMALL:  # read it now: one opening of the member instead of two
                whole = raw + self._rest(member, name, nbytes)
        self.headers[name] = header = (raw, shape, fortran, dtype, whole)
        return header

    def _rest(self, member: IO[bytes], name: str, nbytes: int) -> bytes:
        data = self._read_exactly(member, nbytes, name)
        if member.read(1):  # also makes zipfile check the member's CRC
            self.fail(f"the file is damaged: {name} is longer than its size")
        return data

    def _data(self, name: str, digest: Any, keep: bool) -> Any:
        """Member ``name``'s data (its header read already), hashed into ``digest``; its array if ``keep``."""
        raw, shape, fortran, dtype, whole = self.headers[name]
        nbytes = self.members[name].file_size - len(raw)
        if whole is not None:
            digest.update(whole)
            buffer = np.frombuffer(bytearray(whole[len(raw):]), np.uint8) if keep else None
        else:
            with self._open(name) as member:
                if self._read_exactly(member, len(raw), name) != raw:
                    self.fail(f"the file changed while it was read: {name}")
                digest.update(raw)
                buffer = np.empty(nbytes if keep else min(nbytes, _CHUNK), np.uint8)
                view = memoryview(buffer)  # type: ignore[arg-type]
                done = 0
                while done < nbytes:
                    part = view[done:done + _CHUNK] if keep else view[:min(_CHUNK, nbytes - done)]
                    got = member.readinto(part)
                    if not got:
                        self.fail(f"the file is truncated: {name} ends early")
                    digest.update(part[:got])
                    done += got
                if member.read(1):  # also makes zipfile check the member's CRC
                    self.fail(f"the file is damaged: {name} is longer than its size")
        if not keep:
            return None
        if nbytes == 0:
            return np.zeros(shape, dtype, order="F" if fortran else "C")
        flat = buffer.view(dtype)  # type: ignore[union-attr]
        return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _text(array: Any) -> str:
    return str(array[()])


# ---------------------------------------------------------------------- shared
def _holding(targets: Mapping[str, Any], optimizer: Any) -> Any:
    """The locks of the parameters and of the optimizer's memory, taken together (see fastopt._locks)."""
    arrays = [a for a in targets.values() if isinstance(a, np.ndarray)]
    if optimizer is not None:
        arrays += [slot.param for slot in optimizer._layout.slots]
    return holding(arrays)


def _class_name(optimizer: Any) -> str:
    """What ``optimizer/class`` holds: the class's name, and a wrapper's with the wrapped one's (``Lookahead(AdamW)``)."""
    return optimizer.checkpoint_name if isinstance(optimizer, OptimizerWrapper) else type(optimizer).__name__


def _check_optimizer(optimizer: object) -> None:
    if not isinstance(optimizer, (Optimizer, OptimizerWrapper)):
        raise TypeError(f"optimizer must be a fastopt.optim.Optimizer (or a wrapper of one, such as Lookahead), "
                        f"got {type(optimizer).__name__}")


def _named(params: object) -> dict[str, Any]:
    """{name: array} for a ParamSet, a dict or a list/tuple of arrays."""
    if isinstance(params, ParamSet):
        return dict(params.items())
    if isinstance(params, Mapping):
        named = {str(k): v for k, v in params.items()}
        if len(named) != len(params):
            raise ValueError(f"params keys {list(params)} collide once written as strings")
        return named
    if isinstance(params, (list, tuple)):
        return {str(i): v for i, v in enumerate(params)}
    raise TypeError(f"params must be a ParamSet, or a dict, list or tuple of arrays; got {type(params).__name__}")
