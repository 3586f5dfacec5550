"""Checkpoints: parameters and optimizer state in one ``.npz`` file, never pickled.

Layout of the archive (every entry a plain array; strings are unicode arrays):

* ``format``: ``"fastopt-checkpoint-1"``;
* ``params/<name>``: each parameter (ParamSet tensor names, dict keys, or
  list indices);
* ``optimizer/class``: the optimizer's class name;
* ``optimizer/param_groups``: the groups' hyperparameters and slot indices, as JSON;
* ``optimizer/skipped_steps``: steps refused for non-finite gradients;
* ``optimizer/state/<slot>/<key>``: each state array or scalar.

Loading checks every name, shape and dtype (and the optimizer's class and
layout) before it changes anything, so a mismatched file leaves the model
and the optimizer exactly as they were.  Resuming from a checkpoint gives
the same bits as training straight through.
"""
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping

import numpy as np

from fastopt.paramset import ParamSet

FORMAT = "fastopt-checkpoint-1"


def save(path, params, optimizer=None):
    """Write ``params`` (and ``optimizer``'s state) to the ``.npz`` file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Written atomically (to a temporary file, then renamed), exactly at
        this path: no suffix is added.
    params : ParamSet, or dict/list/tuple of numpy.ndarray
    optimizer : fastopt.optim.Optimizer, optional
    """
    entries = {"format": np.array(FORMAT)}
    for name, array in _named(params).items():
        entries[f"params/{name}"] = array
    if optimizer is not None:
        snapshot = optimizer.state_dict()
        entries["optimizer/class"] = np.array(type(optimizer).__name__)
        entries["optimizer/param_groups"] = np.array(json.dumps(snapshot["param_groups"]))
        entries["optimizer/skipped_steps"] = np.asarray(snapshot["skipped_steps"])
        for index, state in snapshot["state"].items():
            for key, value in state.items():
                entries[f"optimizer/state/{index}/{key}"] = np.asarray(value)
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".fastopt-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **entries)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it an ordinary file's mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path, params, optimizer=None):
    """Read a checkpoint written by :func:`save` into ``params`` (and ``optimizer``), in place.

    Raises
    ------
    ValueError
        If the file is not a fastopt checkpoint, or its parameters or
        optimizer state do not match names, shapes, dtypes, optimizer class
        or layout; nothing is changed then.
    """
    targets = _named(params)
    try:
        archive = np.load(os.fspath(path), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a fastopt checkpoint ({FORMAT}): {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a fastopt checkpoint ({FORMAT}): it holds a single array")
    with archive:
        files = set(archive.files)
        if "format" not in files or str(archive["format"]) != FORMAT:
            raise ValueError(f"{path} is not a fastopt checkpoint ({FORMAT})")
        saved = {k[len("params/"):]: archive[k] for k in files if k.startswith("params/")}
        _check_params(saved, targets)
        if optimizer is not None:
            optimizer.load_state_dict(_optimizer_snapshot(archive, files, optimizer, path))
    for name, array in saved.items():
        np.copyto(targets[name], array)


def _named(params):
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


def _check_params(saved, targets):
    missing = sorted(set(targets) - set(saved))
    unexpected = sorted(set(saved) - set(targets))
    if missing or unexpected:
        raise ValueError(f"checkpoint parameters do not match: missing {missing}, unexpected {unexpected}")
    for name, array in saved.items():
        target = targets[name]
        if not isinstance(target, np.ndarray):
            raise TypeError(f"parameter {name!r} must be a numpy.ndarray, got {type(target).__name__}")
        if array.shape != target.shape or array.dtype != target.dtype:
            raise ValueError(f"parameter {name!r} is {array.dtype}{list(array.shape)} in the checkpoint "
                             f"but {target.dtype}{list(target.shape)} here")
        if not target.flags.writeable:
            raise ValueError(f"parameter {name!r} is read-only")


def _optimizer_snapshot(archive, files, optimizer, path):
    if "optimizer/class" not in files:
        raise ValueError(f"{path} holds no optimizer state")
    saved_class = str(archive["optimizer/class"])
    if saved_class != type(optimizer).__name__:
        raise ValueError(f"{path} holds {saved_class} state, not {type(optimizer).__name__}")
    state = {}
    for key in files:
        if key.startswith("optimizer/state/"):
            _, _, index, name = key.split("/", 3)
            state.setdefault(int(index), {})[name] = archive[key]
    snapshot = {"state": state, "param_groups": json.loads(str(archive["optimizer/param_groups"]))}
    if "optimizer/skipped_steps" in files:
        snapshot["skipped_steps"] = archive["optimizer/skipped_steps"]
    return snapshot


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
