"""Write the kernel layer from the rule table (``_rules.py``) and the Tempita templates beside its outputs.

    python src/fastopt/_codegen.py            # rewrite what is out of date
    python src/fastopt/_codegen.py --check    # exit 1, naming the files, if any is out of date

setup.py runs it before Cython does; the outputs are not kept in git (a
repeated kernel there would be a repeat in the source), and
tests/test_codegen.py fails when an output on disk, or a built module,
differs from what the table and templates give.  Each output says at its top
that it is generated; edit the table or the template, never the output.

Like ``_rules.py`` this file imports nothing from fastopt (it runs before
anything is built); it needs Cython (for Tempita), a build requirement.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fastopt._rules import Arg, Rule

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# template -> output, relative to the project root
OUTPUTS = {
    "src/fastopt/_update_rules.pyx.tp": "src/fastopt/_update_rules.pyx",
    "src/fastopt/_update_rules.pxd.tp": "src/fastopt/_update_rules.pxd",
    "src/fastopt/_update_rules.pyi.tp": "src/fastopt/_update_rules.pyi",  # its type stub (no source of a build)
    "src/fastopt/cython_kernels.pyx.tp": "src/fastopt/cython_kernels.pyx",
    "src/fastopt/cython_kernels.pxd.tp": "src/fastopt/cython_kernels.pxd",
    "csrc/fastopt.h.tp": "csrc/fastopt.h",
}

DTYPES = (("float", "f32"), ("double", "f64"))


class _RuleTable(Protocol):
    """What the generator reads of the rule table (the module ``_rules.py``, loaded by :func:`_load_rules`)."""

    @property
    def ABI_VERSION(self) -> int: ...
    @property
    def ARGS(self) -> Mapping[str, Arg]: ...
    @property
    def RULES(self) -> Mapping[str, Rule]: ...
    @property
    def C_API(self) -> Sequence[str]: ...


def _load_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastopt_rule_table", os.path.join(HERE, "_rules.py"))
    assert spec is not None and spec.loader is not None  # a file location always has a loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _combos(flags: Sequence[str]) -> list[SimpleNamespace]:
    """Every combination of ``flags``: (name suffix, condition, literal arguments)."""
    out = []
    for bits in range(2 ** len(flags) - 1, -1, -1):
        on = [bits >> (len(flags) - 1 - k) & 1 for k in range(len(flags))]
        suffix = "".join(f"_{f}" for f, b in zip(flags, on) if b) or ("_plain" if flags else "")
        condition = " and ".join(f if b else f"not {f}" for f, b in zip(flags, on))
        literals = "".join(f", {bool(b)}" for b in on)
        out.append(SimpleNamespace(suffix=suffix, condition=condition, literals=literals))
    return out


def _signature(rule: Rule, table: _RuleTable, T: str) -> list[str]:
    """The kernel's C-level parameters for element type ``T`` (a Cython type name)."""
    pointers = [f"{T}* param", f"const {T}* grad"] + [f"{T}* {s.arg}" for s in rule.state]
    extra = [table.ARGS[a].cython for a in rule.args]
    return pointers + ["Py_ssize_t n", f"const {rule.label}Hyper* hyper"] + extra + ["int num_threads"]


def _c_signature(rule: Rule, table: _RuleTable, T: str) -> list[str]:
    """The same parameters in C (flags are ints there)."""
    out = [f"{T} *param", f"const {T} *grad"] + [f"{T} *{s.arg}" for s in rule.state]
    out += ["Py_ssize_t n", f"const fastopt_{rule.name}_hyper *hyper"]
    return out + [table.ARGS[a].c for a in rule.args] + ["int num_threads"]


def _stored_signature(rule: Rule, table: _RuleTable, c: bool = False) -> list[str]:
    """The parameters of the rule's stored-update entry point (arrays in any storage types), in Cython or C."""
    if c:
        return (["const fastopt_storage *storage", "Py_ssize_t n", f"const fastopt_{rule.name}_hyper *hyper"]
                + [table.ARGS[a].c for a in rule.args] + ["int num_threads"])
    return (["const fastopt_storage* storage", "Py_ssize_t n", f"const {rule.label}Hyper* hyper"]
            + [table.ARGS[a].cython for a in rule.args] + ["int num_threads"])


def _c_api(table: _RuleTable, rules: Sequence[SimpleNamespace]) -> list[tuple[str, str, list[str], str]]:
    """The C API table's members, in table order: (member, Cython return type, Cython parameter types, source)."""
    members, by_name = [], {r.name: r for r in rules}
    for member in table.C_API:
        if member.startswith("count_nonfinite_"):
            T = {"f32": "float", "f64": "double"}[member.rsplit("_", 1)[1]]
            members.append((member, "Py_ssize_t", [f"const {T}*", "Py_ssize_t", "int"], f"count_nonfinite[{T}]"))
            continue
        rule, kind = member.split("_update_")
        types = by_name[rule].stored_types if kind == "stored" else by_name[rule].types[dict(
            (s, T) for T, s in DTYPES)[kind]]
        members.append((member, "void", types, member))
    expected = {f"{r.name}_update_{k}" for r in rules for k in ("f32", "f64", "stored")}
    expected |= {"count_nonfinite_f32", "count_nonfinite_f64"}
    if set(table.C_API) != expected or len(set(table.C_API)) != len(table.C_API):
        raise ValueError(f"C_API must list each of {sorted(expected)} once; missing "
                         f"{sorted(expected - set(table.C_API))}, unknown {sorted(set(table.C_API) - expected)}")
    return members


def _wrap(words: Sequence[str], lead: str, width: int = 110, closing: str = "") -> str:
    """``lead`` followed by ``words`` joined by ", ", wrapped under the opening parenthesis."""
    lines, line = [], lead
    pad = " " * len(lead)
    for k, word in enumerate(words):
        piece = word + (", " if k < len(words) - 1 else closing)
        if len(line) + len(piece.rstrip()) > width and line.strip() not in ("", lead.strip()):
            lines.append(line.rstrip())
            line = pad
        line += piece
    lines.append(line.rstrip())
    return "\n".join(lines)


def _notes(rule: Rule, table: _RuleTable) -> list[str]:
    """What a caller must know about the kernel's arguments beyond their names, one line each."""
    notes = [f"{s.arg} may be NULL {s.when[1]}." for s in rule.state if s.when is not None]
    notes += [f"{a}: {table.ARGS[a].doc}." for a in rule.args if table.ARGS[a].doc]
    return [line for note in notes for line in textwrap.wrap(note, 90, subsequent_indent="  ")]


# Names the generated code gives its own variables; a rule's state, scalars, flags and locals must not take them.
RESERVED = {"p", "g", "i", "a", "h", "n", "hyper", "param", "grad", "start", "stop", "body", "num_threads",
            "storage"}


def _check_names(rule: Rule, table: _RuleTable) -> None:
    """Refuse a rule whose names would clash in the generated code, or whose state depends on no flag."""
    flags = dict(rule.flags)
    names = ([s.arg for s in rule.state] + [n for n, _ in rule.scalars] + list(flags)
             + [n.strip() for n in rule.locals.split(",")])
    clash = sorted(RESERVED.intersection(names) | {n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"{rule.name}: names {clash} clash in the generated kernel")
    for s in rule.state:
        if s.when is not None and (s.when[0] not in flags or any(a in flags[s.when[0]] for a in table.ARGS)):
            raise ValueError(f"{rule.name}: {s.name} is used when {s.when[0]!r}, which must be one of the "
                             f"rule's flags and depend on the hyperparameters only")
    unknown = set(rule.specialize) - set(flags)
    if unknown:
        raise ValueError(f"{rule.name}: specialize names {sorted(unknown)}, which are not flags")
    if sum(1 for a in rule.args if table.ARGS[a].running) > 1:
        raise ValueError(f"{rule.name}: at most one of its args may keep running numbers (they share one buffer)")


def _view(table: _RuleTable) -> SimpleNamespace:
    """What the templates see: the table, with each rule's derived pieces spelled out."""
    rules = []
    for number, rule in enumerate(table.RULES.values()):
        runtime = [name for name, _ in rule.flags if name not in rule.specialize]
        flag_exprs = dict(rule.flags)
        _check_names(rule, table)
        view = SimpleNamespace(
            name=rule.name, number=number, title=f"{rule.label} {rule.origin}",
            formula=rule.formula.splitlines(),
            struct=f"{rule.label}Hyper", c_struct=f"fastopt_{rule.name}_hyper",
            fields=[(h.name, "bint" if h.is_flag else "double", "int" if h.is_flag else "double")
                    for h in rule.kernel_hyper],
            states=[s.arg for s in rule.state],
            setup=textwrap.indent(rule.setup.strip(), "    ") if rule.setup.strip() else "",
            scalars=list(rule.scalars), runtime=[(name, flag_exprs[name]) for name in runtime],
            specialized=[(name, flag_exprs[name]) for name in rule.specialize],
            combos=_combos(rule.specialize), locals=rule.locals,
            body=textwrap.indent(rule.body.strip(), " " * 8),
            notes=_notes(rule, table),
            needs=["True" if st.when is None else f"({flag_exprs[st.when[0]]})" for st in rule.state],
            bound_args=[table.ARGS[a].bound for a in rule.args],
        )
        view.signature = {T: _signature(rule, table, T) for T, _ in DTYPES}
        view.fused = _signature(rule, table, "floating")
        view.c_signature = {sfx: _c_signature(rule, table, T) for T, sfx in DTYPES}
        view.names = [p.split()[-1].lstrip("*") for p in view.fused]  # the parameters' names, to pass them on
        view.types = {T: [p.rsplit(" ", 1)[0] for p in view.signature[T]] for T, _ in DTYPES}  # ... and types
        view.prepare = {T: [f"const {rule.label}Hyper* hyper", f"_{rule.name}_args_{sfx}* a"]
                        + [table.ARGS[a].cython for a in rule.args] for T, sfx in DTYPES}
        view.arg_names = [table.ARGS[a].cython.split()[-1].lstrip("*") for a in rule.args]
        view.stored = _stored_signature(rule, table)
        view.stored_types = [p.rsplit(" ", 1)[0] for p in view.stored]
        view.c_stored = _stored_signature(rule, table, c=True)
        view.signed_mask = sum(1 << k for k, s in enumerate(rule.state) if s.signed)
        rules.append(view)
    return SimpleNamespace(rules=rules, dtypes=DTYPES, abi_version=table.ABI_VERSION, c_api=_c_api(table, rules),
                           max_state=max(len(r.states) for r in rules),
                           max_running=max(1, max(len(rule.running) for rule in table.RULES.values())), wrap=_wrap)


def digest(root: str = ROOT) -> str:
    """SHA-256 of the generated files (with this digest itself left out).

    The generated kernel module carries it (``BUILD["source_digest"]``), so a
    test can tell a module built from other sources than the ones on disk; an
    edit to the table or a template that leaves the output alone changes
    nothing.  (``_parallel.pxd``, ``fastopt_config.h`` and the compiler flags
    are not generated, so the digest does not cover them; nor does it cover
    the type stub ``_update_rules.pyi``, which no build compiles.)
    """
    h = hashlib.sha256()
    for target, text in sorted(_render(root, "").items()):
        if target.endswith(".pyi"):
            continue
        h.update(target.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def _c_types(params: str) -> list[str]:
    """The types of a C parameter list ("float *param, int n" -> ["float *", "int"])."""
    return [re.sub(r"\s*\b\w+$", "", p.strip()).replace(" *", " *").strip() for p in params.split(",")]


def abi_layout(root: str = ROOT) -> list[str]:
    """The C API as the generated ``fastopt.h`` declares it: one line per member of the table, in order.

    Each line gives the member's type with the kernel signature and the
    hyperparameter struct's field types spelled out (names left out: renaming
    a parameter breaks no caller), after a first line for the capsule name
    and the table's header members.  Appending a rule appends lines; any
    other change must come with a new ``ABI_VERSION`` (tests/test_codegen.py
    holds each version's lines).
    """
    header = render(root)["csrc/fastopt.h"]
    structs = {name: [f.strip().rsplit(" ", 1)[0] for f in body.split(";") if f.strip()]
               for name, body in re.findall(r"typedef struct (fastopt_\w+_hyper) \{(.*?)\} \1;", header, re.S)}
    functions: dict[str, str] = {}
    for ret, name, params in re.findall(r"typedef (\w[\w ]*?) \(\*(fastopt_\w+_fn)\)\((.*?)\);", header, re.S):
        types: list[str] = []
        for t in _c_types(params):
            struct = re.search(r"fastopt_\w+_hyper", t)
            types.append(t.replace(struct.group(0), "{" + ", ".join(structs[struct.group(0)]) + "}") if struct else t)
        functions[name] = f"{ret}({', '.join(types)})"
    api = re.search(r"typedef struct fastopt_api \{(.*?)\} fastopt_api;", header, re.S)
    assert api is not None, "fastopt.h declares no struct fastopt_api"
    entries = [line.split("/*")[0].strip().rstrip(";") for line in api.group(1).splitlines() if line.strip()]
    capsule_name = re.search(r'#define FASTOPT_CAPSULE_NAME (".*?")', header)
    assert capsule_name is not None, "fastopt.h defines no FASTOPT_CAPSULE_NAME"
    capsule = capsule_name.group(1)
    members: list[tuple[str, str]] = []  # (type, name)
    for entry in entries:
        member = re.match(r"(.*?)(\w+)$", entry)
        assert member is not None, f"a member of fastopt_api without a name: {entry!r}"
        members.append((member.group(1), member.group(2)))
    lines = [capsule + "; " + "; ".join(kind.strip() for kind, _ in members[:3])]
    lines += [f"{name}: {functions.get(kind.strip(), kind.strip())}" for kind, name in members[3:]]
    return lines


def storage_abi(root: str = ROOT) -> list[str]:
    """The part of the C API that ``csrc/fastopt_storage.h`` (hand-written) declares, one line per item.

    Its structs (field types and names, in order), its storage-type values and
    the constants of the int8 code maps: the stored kernels take these
    structs, and checkpoints hold codes made with these maps, so a change to
    any line needs a new ``ABI_VERSION`` (tests/test_codegen.py holds them).
    """
    with open(os.path.join(root, "csrc", "fastopt_storage.h")) as fh:
        header = re.sub(r"/\*.*?\*/", "", fh.read(), flags=re.S)
    lines = [f"{name}: " + "; ".join(" ".join(f.split()) for f in body.split(";") if f.strip())
             for name, body in re.findall(r"typedef struct (\w+) \{(.*?)\} \1;", header, re.S)]
    enum = re.search(r"enum \{(.*?)\};", header, re.S)
    assert enum is not None, "fastopt_storage.h declares no enum"
    lines.append("enum: " + " ".join(enum.group(1).split()))
    constants = "BLOCK|MAX_STATE|CODE_SHIFT|SIGNED_BASE|UNSIGNED_BASE"
    lines += [f"{name} = {value.strip()}"
              for name, value in re.findall(rf"#define (FASTOPT_(?:{constants})) (.*)$", header, re.M)]
    return lines


def _render(root: str, source_digest: str) -> dict[str, str]:
    from Cython.Tempita import Template

    view = _view(_load_rules())
    view.digest = source_digest
    out = {}
    for template, target in OUTPUTS.items():
        with open(os.path.join(root, template)) as fh:
            source = fh.read()
        banner = GENERATED.format(template=template)
        text: str = Template(source, name=template).substitute(v=view)  # type: ignore[no-untyped-call]
        out[target] = (banner.replace("#", "//") if target.endswith(".h") else banner) + text
    return out


def render(root: str = ROOT) -> dict[str, str]:
    """{output path (relative to ``root``): text} for every generated file."""
    return _render(root, digest(root))


GENERATED = ("# Generated by src/fastopt/_codegen.py from src/fastopt/_rules.py and {template}.\n"
             "# DO NOT EDIT: change the rule table or the template, then run the generator (setup.py does).\n")


def stale(root: str = ROOT) -> list[str]:
    """The outputs whose files differ from what the table and templates give now."""
    out = []
    for target, text in render(root).items():
        try:
            with open(os.path.join(root, target)) as fh:
                current = fh.read()
        except OSError:
            current = None
        if current != text:
            out.append(target)
    return out


def write(root: str = ROOT) -> list[str]:
    """Rewrite the outputs that are out of date (only those, so builds do not redo unchanged work)."""
    changed = []
    for target, text in render(root).items():
        path = os.path.join(root, target)
        try:
            with open(path) as fh:
                if fh.read() == text:
                    continue
        except OSError:
            pass
        with open(path, "w") as fh:
            fh.write(text)
        changed.append(target)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--check"]:
        out_of_date = stale()
        for target in out_of_date:
            print(f"out of date: {target} (run python src/fastopt/_codegen.py)")
        return 1 if out_of_date else 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    for target in write():
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
