"""fastopt.load on damaged and hostile files, fastopt.save on faulty file systems.

Every refusal must be a CheckpointError (a ValueError) or, for I/O, an
OSError, and must leave the parameters and the optimizer exactly as they
were.  Hostile archives are built here from the documented layout (with a
valid checksum where the point is that the layout itself is refused).
"""
import errno
import hashlib
import io
import json
import os
import pickle
import select
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from test_checkpoint import assert_unchanged, snapshot
from test_kernels import assert_bitwise_equal

import fastopt
from fastopt.checkpoint import CheckpointError

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ------------------------------------------------------------------ helpers
def build():
    """Adam on two slots, amsgrad on the second: the smallest model with every kind of state."""
    ps = fastopt.ParamSet({"W": (3, 2), "b": 2})
    opt = fastopt.Adam([{"params": ps.select(["W"])}, {"params": ps.select(["b"]), "amsgrad": True}], lr=0.1)
    return ps, opt


def trained():
    ps, opt = build()
    rng = np.random.default_rng(0)
    ps.data[:] = rng.standard_normal(ps.size)
    for _ in range(2):
        ps.grad[:] = rng.standard_normal(ps.size)
        opt.step()
    return ps, opt


def fresh_target():
    """A model and optimizer with state of their own, to see that a refused load changes nothing."""
    ps, opt = build()
    ps.data[:] = 7.0
    ps.grad[:] = 0.5
    opt.step()
    return ps, opt


def npy(array):
    out = io.BytesIO()
    np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def members(path):
    """{entry name: .npy bytes} of a checkpoint, without its checksum."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename[:-4]: archive.read(info) for info in archive.infolist()
                if info.filename != "checksum.npy"}


def checksum(entries):
    """The checksum as the module's documentation defines it."""
    outer = hashlib.sha256()
    for name in sorted(entries):
        encoded = name.encode()
        outer.update(len(encoded).to_bytes(8, "little") + encoded + hashlib.sha256(entries[name]).digest())
    return outer.hexdigest()


def write(path, entries, sign=True, compression=zipfile.ZIP_STORED):
    """An archive of ``entries`` ({name: .npy bytes, or an array}), with a valid checksum if ``sign``."""
    entries = {k: v if isinstance(v, bytes) else npy(v) for k, v in entries.items()}
    if sign:
        entries = {**entries, "checksum": npy(np.array(checksum(entries)))}
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name + ".npy", data)
    return path


@pytest.fixture
def saved(tmp_path):
    """(path of a checkpoint of ``trained()``, its entries)."""
    ps, opt = trained()
    path = tmp_path / "ckpt.npz"
    fastopt.save(path, ps, opt)
    return path, members(path)


def refuses(path, match=None, cause=None, optimizer=True):
    """Loading ``path`` raises CheckpointError (matching ``match``) and changes nothing; returns the error."""
    ps, opt = fresh_target()
    before = snapshot(ps, opt)
    with pytest.raises(CheckpointError, match=match) as info:
        fastopt.load(path, ps, opt if optimizer else None)
    assert_unchanged(ps, opt, before)
    if cause is not None:
        assert isinstance(info.value.__cause__, cause), repr(info.value.__cause__)
    return info.value


# ------------------------------ 7: one exception type, and nothing changed
def test_checkpoint_error_is_one_exported_value_error():
    assert issubclass(CheckpointError, ValueError)
    assert fastopt.CheckpointError is CheckpointError and "CheckpointError" in fastopt.__all__


def test_a_signed_file_of_the_documented_layout_loads(saved, tmp_path):
    """The helpers here write what save writes: the layout and checksum are as documented."""
    path, entries = saved
    with zipfile.ZipFile(path) as archive:
        stored = str(np.load(io.BytesIO(archive.read("checksum.npy"))))
    assert stored == checksum(entries)
    ps, opt = fresh_target()
    fastopt.load(write(tmp_path / "copy.npz", entries), ps, opt)
    ref, ref_opt = trained()
    assert_unchanged(ps, opt, snapshot(ref, ref_opt))


def zip_with_central_directory_field(raw, offset, value, size):
    """``raw`` with a field of every central-directory record (at ``offset`` in it) set to ``value``."""
    data = bytearray(raw)
    start = data.find(b"PK\x01\x02")
    while start != -1:
        data[start + offset:start + offset + size] = value.to_bytes(size, "little")
        start = data.find(b"PK\x01\x02", start + 4)
    return bytes(data)


@pytest.mark.parametrize("damage, cause", [
    (lambda raw: b"", zipfile.BadZipFile),
    (lambda raw: raw[:100], zipfile.BadZipFile),
    (lambda raw: raw[:len(raw) // 2], zipfile.BadZipFile),
    (lambda raw: raw[:-1], zipfile.BadZipFile),
    (lambda raw: zip_with_central_directory_field(raw, 10, 99, 2), None),   # unknown compression method
    (lambda raw: zip_with_central_directory_field(raw, 8, 1, 2), None),     # "encrypted"
    (lambda raw: raw.replace(b"exp_avg_sq", b"exp_avg_sx", 1), None),       # local header names differ
    (lambda raw: raw.replace(b"\x93NUMPY", b"\x93NUMPX", 1), None),
], ids=["empty", "truncated-100", "truncated-half", "truncated-1", "compression-99", "encrypted",
        "local-name", "npy-magic"])
def test_damaged_files_raise_checkpoint_error(saved, tmp_path, damage, cause):
    path, _ = saved
    bad = tmp_path / "bad.npz"
    bad.write_bytes(damage(path.read_bytes()))
    error = refuses(bad, cause=cause)
    assert str(bad) in str(error)


def test_content_that_would_make_python_fail_deep_inside_raises_checkpoint_error(saved, tmp_path):
    """RecursionError (nested JSON), TypeError and ValueError from load_state_dict: CheckpointError, chained."""
    _, entries = saved
    cases = [
        ("[" * 100_000 + "]" * 100_000, RecursionError),
        (json.dumps([1, 2]), TypeError),
        (json.dumps([{**g, "lr": -1.0} for g in json.loads(str(np.load(io.BytesIO(
            entries["optimizer/param_groups"]))))]), ValueError),
    ]
    for text, cause in cases:
        bad = write(tmp_path / "bad.npz", {**entries, "optimizer/param_groups": np.array(text)})
        refuses(bad, cause=cause)


def test_io_errors_propagate_as_oserror(saved, tmp_path, monkeypatch):
    path, _ = saved
    ps, opt = fresh_target()
    before = snapshot(ps, opt)
    with pytest.raises(FileNotFoundError):
        fastopt.load(tmp_path / "missing.npz", ps, opt)
    with pytest.raises(IsADirectoryError):
        fastopt.load(tmp_path, ps, opt)

    class Failing(io.FileIO):
        def read(self, n=-1):
            if self.tell() > 1000:
                raise OSError(errno.EIO, "Input/output error")
            return super().read(n)
    monkeypatch.setattr(fastopt.checkpoint, "open", lambda p, mode: Failing(p, mode), raising=False)
    with pytest.raises(OSError) as info:
        fastopt.load(path, ps, opt)
    assert info.value.errno == errno.EIO and not isinstance(info.value, CheckpointError)
    assert_unchanged(ps, opt, before)


@pytest.mark.skipif(AS_ROOT or not hasattr(os, "geteuid"), reason="root reads files whatever their mode")
def test_an_unreadable_file_is_a_permission_error(saved):
    path, _ = saved
    path.chmod(0)
    try:
        with pytest.raises(PermissionError):
            fastopt.load(path, build()[0])
    finally:
        path.chmod(0o600)


# ------------------------- 6: nothing read beyond what the caller expects
def test_a_header_claiming_2_to_the_40_elements_is_refused_without_allocating(saved, tmp_path):
    _, entries = saved
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})
    for name in ("params/b", "optimizer/state/1/max_exp_avg_sq"):
        bad = write(tmp_path / "bad.npz", {**entries, name: header.getvalue()})
        assert bad.stat().st_size < 8192
        refuses(bad, match=r"float64\[1099511627776\] in the checkpoint but float64\[2\] here")
    # Without an optimizer, state arrays have no expected shape: the directory's sizes bound them.
    bad = write(tmp_path / "bad.npz", {**entries, "optimizer/state/1/max_exp_avg_sq": header.getvalue()})
    with pytest.raises(CheckpointError, match="takes"):
        fastopt.load(bad, build()[0])


def test_a_deflated_bomb_is_refused_from_the_directory(saved, tmp_path, monkeypatch):
    """A 64 MiB entry deflated into a small file: refused before anything is inflated."""
    _, entries = saved
    bad = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bad, "w") as archive:
        for name, data in entries.items():
            if name != "optimizer/state/0/exp_avg":
                archive.writestr(name + ".npy", data)
        info = zipfile.ZipInfo("optimizer/state/0/exp_avg.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False,
                                                          "shape": (8 << 20,)})
            for _ in range(64):
                member.write(bytes(1 << 20))
    assert bad.stat().st_size < 1 << 20

    def inflate(*args, **kwargs):
        raise AssertionError("load inflated an entry")
    monkeypatch.setattr(zipfile.zlib, "decompressobj", inflate)
    tracemalloc.start()
    try:
        error = refuses(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not isinstance(error.__cause__, AssertionError)
    assert peak < 8 << 20


def test_a_member_larger_than_its_header_says_is_refused_before_its_data_is_read(saved, tmp_path, monkeypatch):
    _, entries = saved
    big = fastopt.ParamSet({"W": (300, 200), "b": 2})
    fastopt.save(tmp_path / "big.npz", big)
    grown = members(tmp_path / "big.npz")
    grown["params/W"] += bytes(8)
    bad = write(tmp_path / "bad.npz", grown)
    read = []
    original = zipfile.ZipExtFile.read

    def counting(self, n=-1):
        data = original(self, n)
        read.append(len(data))
        return data
    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting)
    target = fastopt.ParamSet({"W": (300, 200), "b": 2})
    with pytest.raises(CheckpointError, match=r"params/W takes 480136 bytes, not the 480128"):
        fastopt.load(bad, target)
    assert sum(read) < 10_000  # headers only, not W's 480 kB
    assert not target.data.any()


def local_record(name, data):
    """A zip member as it lies in the file: local header, name, data (stored)."""
    encoded = name.encode()
    return struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 33, zlib.crc32(data), len(data), len(data),
                       len(encoded), 0) + encoded + data


def stored_zip(members):
    """A zip of (name, data, offset) members whose local records are already in ``body`` at ``offset``."""
    body, directory = members[0], b""
    for name, data, offset in members[1]:
        encoded = name.encode()
        directory += struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 33, zlib.crc32(data),
                                 len(data), len(data), len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    count = len(members[1])
    return body + directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory),
                                          len(body), 0)


def test_overlapping_members_are_refused(saved, tmp_path):
    """Members whose data overlap would let a small file make load read far more than its size."""
    _, entries = saved
    inner = local_record("optimizer/state/7/exp_avg.npy", npy(np.zeros(4)))
    outer_data = npy(np.frombuffer(inner + bytes(-len(inner) % 8), np.float64))
    outer = local_record("optimizer/state/6/exp_avg.npy", outer_data)
    records, members, offset = b"", [], 0
    for name, data in {**entries, "checksum": npy(np.array(checksum(entries)))}.items():
        record = local_record(name + ".npy", data)
        members.append((name + ".npy", data, offset))
        records += record
        offset += len(record)
    inner_offset = offset + outer.index(inner)
    members += [("optimizer/state/6/exp_avg.npy", outer_data, offset),
                ("optimizer/state/7/exp_avg.npy", npy(np.zeros(4)), inner_offset)]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(stored_zip((records + outer, members)))
    with zipfile.ZipFile(bad) as archive:  # a readable zip, whose members overlap
        assert archive.read("optimizer/state/7/exp_avg.npy") == npy(np.zeros(4))
    with pytest.raises(CheckpointError, match="overlaps"):
        fastopt.load(bad, build()[0])


def test_text_entries_have_a_size_cap(saved, tmp_path):
    _, entries = saved
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<U100000000", "fortran_order": False, "shape": ()})
    bad = write(tmp_path / "bad.npz", {**entries, "optimizer/param_groups": header.getvalue()})
    refuses(bad, match="at most 4194304 characters")
    for name, value in [("optimizer/class", "A" * 300), ("format", "fastopt-checkpoint-2" + " " * 60)]:
        refuses(write(tmp_path / "bad.npz", {**entries, name: np.array(value)}), match="at most")


class Exploit:
    """Unpickling this would record that pickle ran."""

    ran = False

    def __reduce__(self):
        return (_exploited, ())


def _exploited():
    Exploit.ran = True


def test_pickled_entries_are_refused_and_never_unpickled(saved, tmp_path):
    _, entries = saved
    out = io.BytesIO()
    np.lib.format.write_array(out, np.array([Exploit()], dtype=object), allow_pickle=True)
    assert pickle.loads(pickle.dumps(Exploit())) is None and Exploit.ran  # the payload works...
    Exploit.ran = False
    for name in ("params/b", "optimizer/state/1/step", "optimizer/param_groups"):
        refuses(write(tmp_path / "bad.npz", {**entries, name: out.getvalue()}), match="object")
    assert not Exploit.ran  # ... and load never ran it

# ------------------------------------------- 2: exactly the expected entries
@pytest.mark.parametrize("drop", ["optimizer/state/0/step", "optimizer/state/0/exp_avg",
                                  "optimizer/state/1/exp_avg_sq", "optimizer/state/1/max_exp_avg_sq",
                                  "optimizer/skipped_steps"])
def test_a_dropped_entry_is_refused_by_the_checksum(saved, tmp_path, drop):
    path, entries = saved
    with zipfile.ZipFile(path) as archive:
        kept = {i.filename[:-4]: archive.read(i) for i in archive.infolist() if i.filename != drop + ".npy"}
    refuses(write(tmp_path / "bad.npz", kept, sign=False), match="damaged")


def test_a_dropped_slot_is_refused_by_the_checksum(saved, tmp_path):
    path, entries = saved
    with zipfile.ZipFile(path) as archive:
        kept = {i.filename[:-4]: archive.read(i) for i in archive.infolist()
                if not i.filename.startswith("optimizer/state/1/")}
    refuses(write(tmp_path / "bad.npz", kept, sign=False), match="checksum does not match")


def test_altered_data_is_refused_by_the_checksum(saved, tmp_path):
    path, entries = saved
    with zipfile.ZipFile(path) as archive:
        kept = {i.filename[:-4]: archive.read(i) for i in archive.infolist()}
    data = bytearray(kept["optimizer/state/0/exp_avg"])
    data[-1] ^= 0x10
    kept["optimizer/state/0/exp_avg"] = bytes(data)
    refuses(write(tmp_path / "bad.npz", kept, sign=False), match="checksum does not match")
    with pytest.raises(CheckpointError, match="checksum does not match"):  # also when only params are loaded
        fastopt.load(write(tmp_path / "bad.npz", kept, sign=False), build()[0])


def test_a_file_without_its_checksum_is_refused(saved, tmp_path):
    _, entries = saved
    refuses(write(tmp_path / "bad.npz", entries, sign=False), match="no checksum")


@pytest.mark.parametrize("name", [
    "junk", "params", "optimizer/state/0", "optimizer/state/01/step", "optimizer/state/+1/step",
    "optimizer/state/ 1/step", "optimizer/state/x/step", "optimizer/state/0/step/x", "optimizer/other",
    "optimizer/state/0/-", "Format",
])
def test_entries_outside_the_layout_are_refused_even_when_signed(saved, tmp_path, name):
    _, entries = saved
    refuses(write(tmp_path / "bad.npz", {**entries, name: np.zeros(2)}), match="not an entry")


def test_members_that_are_not_npy_files_or_are_duplicated_are_refused(saved, tmp_path):
    path, entries = saved
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name + ".npy", data)
        archive.writestr("notes.txt", b"hello")
    refuses(bad, match="'notes.txt'")
    with zipfile.ZipFile(bad, "w") as archive:
        for name, data in {**entries, "checksum": npy(np.array(checksum(entries)))}.items():
            archive.writestr(name + ".npy", data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("params/b.npy", entries["params/b"])
    refuses(bad, match="twice")


def test_unknown_state_names_are_refused_even_when_signed(saved, tmp_path):
    _, entries = saved
    refuses(write(tmp_path / "bad.npz", {**entries, "optimizer/state/0/exp_avgg": np.zeros(6)}),
            match="state 'exp_avgg' for slot 0, which Adam does not keep")
    refuses(write(tmp_path / "bad.npz", {**entries, "optimizer/state/0/mu_product": np.array(1.0)}),
            match="'mu_product'")


def test_state_for_a_slot_the_optimizer_lacks_is_refused(saved, tmp_path):
    _, entries = saved
    refuses(write(tmp_path / "bad.npz", {**entries, "optimizer/state/2/step": np.array(1)}),
            match="state for slot 2, but this Adam has 2 slots")


def test_state_of_the_wrong_shape_or_kind_is_refused(saved, tmp_path):
    _, entries = saved
    for name, value, match in [
        ("optimizer/state/0/exp_avg", np.zeros(5), r"state 'exp_avg' of slot 0 is float64\[5\]"),
        ("optimizer/state/0/exp_avg", np.zeros(6, np.float32), "float32"),
        ("optimizer/state/0/step", np.array(2.0), "single integer"),
        ("optimizer/state/0/step", np.array([2]), "single integer"),
        ("optimizer/skipped_steps", np.array("0"), "single integer"),
        ("optimizer/class", np.array([b"Adam"]), "string"),
    ]:
        refuses(write(tmp_path / "bad.npz", {**entries, name: value}), match=match)


def test_a_partial_set_of_optimizer_entries_is_refused(saved, tmp_path):
    _, entries = saved
    for drop in ("optimizer/class", "optimizer/param_groups", "optimizer/skipped_steps"):
        kept = {k: v for k, v in entries.items() if k != drop}
        refuses(write(tmp_path / "bad.npz", kept), match=f"no {drop}")
        with pytest.raises(CheckpointError, match=f"no {drop}"):  # also when only params are loaded
            fastopt.load(tmp_path / "bad.npz", build()[0])
    params_only = {k: v for k, v in entries.items() if not k.startswith("optimizer/")}
    refuses(write(tmp_path / "bad.npz", {**params_only, "optimizer/state/0/step": np.array(1)}),
            match="no optimizer/class")


@pytest.mark.parametrize("drop", ["optimizer/state/0/step", "optimizer/state/0/exp_avg_sq",
                                  "optimizer/state/1/exp_avg"])
def test_an_incomplete_slot_is_refused_even_when_signed(saved, tmp_path, drop):
    _, entries = saved
    kept = {k: v for k, v in entries.items() if k != drop}
    refuses(write(tmp_path / "bad.npz", kept), match="the optimizer refuses its state", cause=ValueError)


def version_1(entries):
    """The same checkpoint as version 1 wrote it: no checksum."""
    return {**entries, "format": npy(np.array("fastopt-checkpoint-1"))}


def test_version_1_files_load_with_every_check_but_the_checksum(saved, tmp_path):
    _, entries = saved
    old = write(tmp_path / "v1.npz", version_1(entries), sign=False)
    ps, opt = fresh_target()
    fastopt.load(old, ps, opt)
    ref, ref_opt = trained()
    assert_unchanged(ps, opt, snapshot(ref, ref_opt))
    refuses(write(tmp_path / "bad.npz", {**version_1(entries), "junk": np.zeros(1)}, sign=False),
            match="not an entry")
    refuses(write(tmp_path / "bad.npz", version_1(entries)), match="'checksum', which is not an entry")
    refuses(write(tmp_path / "bad.npz", {**version_1(entries), "optimizer/state/0/foo": np.zeros(6)},
                  sign=False), match="'foo'")


def test_an_unknown_format_is_not_a_checkpoint(saved, tmp_path):
    _, entries = saved
    refuses(write(tmp_path / "bad.npz", {**entries, "format": np.array("fastopt-checkpoint-3")}),
            match="not a fastopt checkpoint")


def test_params_only_load_checks_the_optimizer_entries_generically(saved, tmp_path):
    _, entries = saved
    ps = build()[0]
    fastopt.load(write(tmp_path / "ok.npz", entries), ps)
    assert_bitwise_equal(ps.data, trained()[0].data)
    for name, value in [("optimizer/state/0/exp_avg", np.zeros((2, 3))), ("optimizer/state/0/step", np.zeros(1)),
                        ("optimizer/state/0/exp_avg", np.zeros(3, np.int64))]:
        with pytest.raises(CheckpointError, match="must be"):
            fastopt.load(write(tmp_path / "bad.npz", {**entries, name: value}), ps)


# ----------------------------------------------------------- 9: save faults
def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "c.npz"
    for mode in (0o640, 0o600, 0o604):
        path.write_bytes(b"old")
        path.chmod(mode)
        fastopt.save(path, [np.ones(2)])
        assert stat.S_IMODE(path.stat().st_mode) == mode
        out = [np.zeros(2)]
        fastopt.load(path, out)
        assert out[0].tolist() == [1, 1]


@pytest.mark.skipif(AS_ROOT or not hasattr(os, "geteuid"), reason="root may write a read-only file")
def test_save_refuses_a_read_only_destination(tmp_path):
    path = tmp_path / "c.npz"
    fastopt.save(path, [np.ones(2)])
    path.chmod(0o444)
    before = path.read_bytes()
    with pytest.raises(PermissionError):
        fastopt.save(path, [np.zeros(2)])
    assert path.read_bytes() == before and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_save_follows_os_access_for_an_existing_destination(tmp_path, monkeypatch):
    """The refusal is os.access(path, W_OK)'s verdict (which also holds for root, where it says yes)."""
    path = tmp_path / "c.npz"
    fastopt.save(path, [np.ones(2)])
    before = path.read_bytes()
    monkeypatch.setattr(fastopt.checkpoint.os, "access", lambda p, mode: not (p == str(path) and mode == os.W_OK))
    with pytest.raises(PermissionError):
        fastopt.save(path, [np.zeros(2)])
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
    with pytest.raises(IsADirectoryError):
        fastopt.save(tmp_path, [np.zeros(2)])


def test_save_fsyncs_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)
    monkeypatch.setattr(fastopt.checkpoint.os, "fsync", fsync)
    monkeypatch.setattr(fastopt.checkpoint.os, "replace", replace)
    fastopt.save(tmp_path / "c.npz", [np.ones(2)])
    assert events == ["fsync file", "replace", "fsync dir"]


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    fastopt.save(path, [np.ones(2)])
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError, match="No space"):
        fastopt.save(path, [np.zeros(2)])
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def temporary_name(host=None, pid=12345):
    host = host or fastopt.checkpoint._host()
    return f".fastopt-{host}-{pid}-0123456789abcdef.tmp"


def test_save_removes_stale_temporaries_but_none_in_use_and_no_other_hosts(tmp_path):
    import fcntl

    stale = tmp_path / temporary_name()
    busy = tmp_path / temporary_name(pid=23456)
    other_host = tmp_path / temporary_name(host="elsewhere.example", pid=1)
    unrelated = [tmp_path / ".fastopt-abc.npz", tmp_path / "fastopt-x-1-0123456789abcdef.tmp"]
    for path in [stale, busy, other_host, *unrelated]:
        path.write_bytes(b"partial")
    with open(busy, "rb+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # a save in progress (a lock is per open file, so this process counts)
        fastopt.save(tmp_path / "c.npz", [np.ones(2)])
        assert not stale.exists() and busy.exists() and other_host.exists()
    assert all(path.exists() for path in unrelated)
    fastopt.save(tmp_path / "c.npz", [np.ones(2)])
    assert not busy.exists() and other_host.exists()


def test_a_temporary_removed_before_its_writer_locked_it_is_replaced(tmp_path, monkeypatch):
    """The race between creating a temporary and locking it: the writer starts again under a new name."""
    import fcntl

    real_flock, calls = fcntl.flock, []

    def flock(fd, op):
        if not calls:  # another save's cleanup takes the fresh temporary first
            for path in tmp_path.glob(".fastopt-*.tmp"):
                path.unlink()
        calls.append(op)
        return real_flock(fd, op)
    monkeypatch.setattr(fcntl, "flock", flock)
    fastopt.save(tmp_path / "c.npz", [np.ones(2)])
    assert len(calls) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
    out = [np.zeros(2)]
    fastopt.load(tmp_path / "c.npz", out)
    assert out[0].tolist() == [1, 1]


def test_without_file_locks_save_works_and_removes_no_temporary(tmp_path, monkeypatch):
    import fcntl

    def flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", flock)
    stale = tmp_path / temporary_name()
    stale.write_bytes(b"partial")
    fastopt.save(tmp_path / "c.npz", [np.ones(2)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["c.npz", stale.name])


SLOW_SAVE = textwrap.dedent("""
    import sys, time
    import numpy as np
    import fastopt
    write_array = np.lib.format.write_array
    def slow(fp, array, *args, **kwargs):
        write_array(fp, array, *args, **kwargs)
        if array.size > 1000:
            print("writing", flush=True)
            time.sleep(600)
    np.lib.format.write_array = slow
    fastopt.save(sys.argv[1], {"w": np.ones(100_000)})
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_save_killed_midway_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "c.npz"
    fastopt.save(path, {"w": np.zeros(100_000)})
    before = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", SLOW_SAVE, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 120)  # a stalled child fails the test, never hangs it
        assert ready and child.stdout.readline() == "writing\n"
        temporaries = list(tmp_path.glob(".fastopt-*.tmp"))
        assert len(temporaries) == 1 and f"-{child.pid}-" in temporaries[0].name
        fastopt.save(tmp_path / "other.npz", [np.ones(2)])  # a concurrent save leaves it alone
        assert temporaries[0].exists()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before and temporaries[0].exists()
    out = {"w": np.ones(100_000)}
    fastopt.load(path, out)
    assert not out["w"].any()
    fastopt.save(tmp_path / "other.npz", [np.ones(2)])
    assert not temporaries[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "other.npz"]



# ------------------------------------- corruption of any byte, property-based
GRAD = np.random.default_rng(7).standard_normal(8)


def next_step(ps, opt):
    """The parameters and state after one more step with a fixed gradient."""
    ps.grad[:] = GRAD
    opt.step()
    return snapshot(ps, opt)


def original_bytes():
    ps, opt = trained()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "c.npz")
        fastopt.save(path, ps, opt)
        with open(path, "rb") as fh:
            return fh.read()


ORIGINAL = original_bytes()
CORRUPTION = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                      suppress_health_check=[HealthCheck.too_slow])


class Loader:
    """Loads corrupted copies of ORIGINAL into one target, rebuilt only when a load succeeds."""

    def __init__(self, directory):
        self.path = directory / "corrupted.npz"
        ps, opt = build()
        fastopt.load(self._write(ORIGINAL), ps, opt)
        self.expected = next_step(ps, opt)
        self.target = fresh_target()
        self.before = snapshot(*self.target)
        self.outcomes = {"refused": 0, "loaded": 0}

    def _write(self, data):
        self.path.write_bytes(bytes(data))
        return self.path

    def check(self, data):
        """Refused with CheckpointError changing nothing, or loaded and continuing as the original does."""
        ps, opt = self.target
        try:
            fastopt.load(self._write(data), ps, opt)
        except CheckpointError:
            assert_unchanged(ps, opt, self.before)
            self.outcomes["refused"] += 1
            return
        next_step(ps, opt)
        assert_unchanged(ps, opt, self.expected)
        self.outcomes["loaded"] += 1
        self.target = fresh_target()
        self.before = snapshot(*self.target)


def test_every_single_bit_flip_is_refused_or_harmless(tmp_path):
    loader = Loader(tmp_path)

    @CORRUPTION
    @given(st.integers(0, 8 * len(ORIGINAL) - 1))
    def flip(bit):
        data = bytearray(ORIGINAL)
        data[bit // 8] ^= 1 << (bit % 8)
        loader.check(data)
    flip()
    assert loader.outcomes["refused"] > 0


def test_random_byte_corruption_is_refused_or_harmless(tmp_path):
    loader = Loader(tmp_path)

    @CORRUPTION
    @given(st.lists(st.tuples(st.integers(0, len(ORIGINAL) - 1), st.integers(0, 255)), min_size=1, max_size=16))
    def corrupt(changes):
        data = bytearray(ORIGINAL)
        for position, value in changes:
            data[position] = value
        loader.check(data)
    corrupt()


def test_truncation_and_junk_are_refused_or_harmless(tmp_path):
    loader = Loader(tmp_path)

    @CORRUPTION
    @given(st.integers(0, len(ORIGINAL) - 1), st.binary(max_size=64))
    def cut(length, junk):
        loader.check(ORIGINAL[:length] + junk)
    cut()
    assert loader.outcomes["refused"] > 0
