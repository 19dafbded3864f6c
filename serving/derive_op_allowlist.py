"""Regenerate `model_server_2.16_ops.txt`, the ops the stock TF Serving 2.16 model server can load.

The stock `tensorflow_model_server` 2.16 links TensorFlow 2.16's own ops plus the ops of tensorflow-text
2.12.1 (not 2.16). Neither the server nor a tensorflow-text 2.12.1 that loads into TF 2.16 can be installed
here, so the list is derived from two sources:

- TensorFlow core: the names in `tf.raw_ops`, TensorFlow's own generated op wrappers. That list is fixed
  inside the tensorflow package, so op libraries loaded by tensorflow-text, tensorflow-io and the like
  cannot add to it (the C++ op registry, by contrast, absorbs every library a process loads, and already
  holds TF's test fixtures and TFLite/TRT/DTensor internals). Ops whose kernels live in TensorFlow's
  Python runtime (`PYTHON_RUNTIME_OPS`) are left out: the C++ server cannot run them.
- tensorflow-text 2.12.1: the op names its op libraries register kernels for, read statically from the
  manylinux x86-64 wheel (its libraries are built against TF 2.12 and do not load into TF 2.16). The
  reader finds each call to `tensorflow::register_kernel::Name::Name(const char*)` and resolves the string
  passed to it. It is checked against the installed tensorflow-text, whose libraries do load, and against
  the wheel's own Python, whose calls into its op libraries must all name an op that was found.

Run from the repository root:
    python -m serving.derive_op_allowlist --download
    python -m serving.derive_op_allowlist --text-wheel tensorflow_text-2.12.1-cp310-...whl
"""

import argparse
import datetime
import importlib.util
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session

SERVER_TF_VERSION = "2.16"
SERVER_TEXT_VERSION = "2.12.1"
DEFAULT_OUTPUT = Path(__file__).with_name("model_server_2.16_ops.txt")
REGENERATE_COMMAND = "python -m serving.derive_op_allowlist --download"

# Their op defs are core, but their kernels call back into the Python interpreter, which the server lacks.
PYTHON_RUNTIME_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})

# tensorflow-text op libraries are the `_*.so` files under tensorflow_text/python; pybinds are not ops.
_OP_LIBRARY = re.compile(r"^tensorflow_text/python/(?:.+/)?_[^/]+\.so$")
_OP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(?:>[A-Za-z][A-Za-z0-9_]*)?$")
_NAME_CTOR = re.compile(r"^_ZN10tensorflow15register_kernel4NameC[12]EPKc$")
_TEXT_NAMESPACE = re.compile(rb"(?<=\x00)TFText>[A-Za-z0-9_]+(?=\x00)")


def core_tf_ops() -> frozenset[str]:
    """TensorFlow's own op names (`tf.raw_ops`), less the ops that need the Python runtime."""
    return frozenset(name for name in dir(tf.raw_ops) if not name.startswith("_")) - PYTHON_RUNTIME_OPS


def registered_op_names() -> frozenset[str]:
    """Every op in this process's C++ registry: TF's plus whatever op libraries were loaded."""
    buffer = pywrap_tf_session.TF_GetAllOpList()
    try:
        op_list = op_def_pb2.OpList.FromString(pywrap_tf_session.TF_GetBuffer(buffer))
    finally:
        pywrap_tf_session.TF_DeleteBuffer(buffer)
    return frozenset(op.name for op in op_list.op)


# --- Reading kernel registrations out of an x86-64 ELF shared library -------------------------------------


@dataclass(frozen=True)
class _Section:
    name: str
    kind: int
    addr: int
    offset: int
    size: int
    link: int


class _Elf:
    """The few parts of a little-endian ELF64 shared library that the registration reader needs."""

    def __init__(self, data: bytes, label: str) -> None:
        if data[:6] != b"\x7fELF\x02\x01" or struct.unpack_from("<H", data, 0x12)[0] != 62:
            raise ValueError(f"{label}: not a little-endian x86-64 ELF64 library")
        self.data = data
        (table,) = struct.unpack_from("<Q", data, 0x28)
        entry_size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
        raw = [struct.unpack_from("<IIQQQQIIQQ", data, table + i * entry_size) for i in range(count)]
        names_offset = raw[names_index][4]
        self.sections = [
            _Section(self.c_string(names_offset + r[0]), r[1], r[3], r[4], r[5], r[6]) for r in raw
        ]

    def c_string(self, offset: int) -> str:
        return self.data[offset : self.data.index(b"\0", offset)].decode("utf-8", "replace")

    def section(self, name: str) -> _Section:
        return next(s for s in self.sections if s.name == name)

    def file_offset(self, addr: int) -> int:
        for s in self.sections:
            if s.kind != 8 and s.addr and s.addr <= addr < s.addr + s.size:  # 8: SHT_NOBITS
                return s.offset + addr - s.addr
        raise ValueError(f"address {addr:#x} is in no section with file contents")

    def dynamic_symbols(self) -> list[tuple[str, int | None]]:
        """(name, value) per dynamic symbol; value None for symbols imported from other libraries."""
        table = self.section(".dynsym")
        strings = self.sections[table.link]
        symbols = []
        for i in range(table.size // 24):
            name, _, _, index, value, _ = struct.unpack_from("<IBBHQQ", self.data, table.offset + i * 24)
            symbols.append((self.c_string(strings.offset + name), value if index else None))
        return symbols

    def relocations(self) -> Iterator[tuple[int, int, str | None, int]]:
        """(slot address, type, symbol name, resolved value) for every RELA entry."""
        symbols = self.dynamic_symbols()
        for s in self.sections:
            if s.kind != 4:  # SHT_RELA
                continue
            for i in range(s.size // 24):
                slot, info, addend = struct.unpack_from("<QQq", self.data, s.offset + i * 24)
                name, value = symbols[info >> 32] if info >> 32 else (None, None)
                yield slot, info & 0xFFFFFFFF, name, addend if value is None else value + addend


def kernel_op_names(data: bytes, label: str = "library") -> frozenset[str]:
    """Op names an op library registers kernels for, read from its machine code without loading it.

    `REGISTER_KERNEL_BUILDER(Name("Op")...)` compiles to a call to `register_kernel::Name::Name(const
    char*)` with the op name in %rsi, set by a RIP-relative `lea` (a literal) or `mov` (a pointer in the
    GOT, as for tflite-shim ops). A call whose argument cannot be resolved to an op name is an error.
    """
    elf = _Elf(data, label)
    relocations = list(elf.relocations())
    slots = {slot for slot, _, name, _ in relocations if name and _NAME_CTOR.match(name)}
    if not slots:
        return frozenset()
    pointers = {slot: value for slot, kind, _, value in relocations if kind in (1, 6, 8)}
    stubs = _plt_stubs(elf, slots)
    text = elf.section(".text")
    code = data[text.offset : text.offset + text.size]
    names = set()
    for match in re.finditer(rb"\xe8|\xff\x15", code):
        at = match.start()
        if code[at] == 0xE8 and at + 5 <= len(code):
            (rel,) = struct.unpack_from("<i", code, at + 1)
            is_call = text.addr + at + 5 + rel in stubs
        elif code[at] == 0xFF and at + 6 <= len(code):
            (rel,) = struct.unpack_from("<i", code, at + 2)
            is_call = text.addr + at + 6 + rel in slots
        else:
            is_call = False
        if is_call:
            names.add(_rsi_string(elf, code, text.addr, at, pointers, label))
    return frozenset(names)


def _plt_stubs(elf: _Elf, slots: set[int]) -> set[int]:
    """Addresses a `call` may target to reach the GOT `slots`: each PLT entry that jumps through one."""
    stubs = set()
    for s in elf.sections:
        if not s.name.startswith(".plt"):
            continue
        code = elf.data[s.offset : s.offset + s.size]
        for match in re.finditer(rb"\xff\x25", code[:-5]):
            at = match.start()
            (rel,) = struct.unpack_from("<i", code, at + 2)
            if s.addr + at + 6 + rel in slots:
                # The entry starts at the jump, or before a `bnd` prefix and an `endbr64` (IBT builds).
                stubs.update({s.addr + at, s.addr + at - 1, s.addr + at - 5, s.addr + at - at % 16})
    return stubs


def _rsi_string(elf: _Elf, code: bytes, base: int, call_at: int, pointers: dict[int, int], label: str) -> str:
    """The C string whose address the nearest RIP-relative `lea`/`mov` into %rsi before `call_at` loads."""
    for at in range(call_at - 7, max(call_at - 64, -1), -1):
        if code[at] == 0x48 and code[at + 1] in (0x8D, 0x8B) and code[at + 2] == 0x35:
            (rel,) = struct.unpack_from("<i", code, at + 3)
            target = base + at + 7 + rel
            if code[at + 1] == 0x8B:  # mov: the operand is a pointer slot, filled in by a relocation
                stored = struct.unpack_from("<Q", elf.data, elf.file_offset(target))[0]
                target = pointers.get(target) or stored
            name = elf.c_string(elf.file_offset(target))
            if _OP_NAME.match(name):
                return name
            break
    raise ValueError(f"{label}: kernel registration at {base + call_at:#x} names no readable op")


# --- tensorflow-text op sets -------------------------------------------------------------------------------


def snake_case(op_name: str) -> str:
    """TF's Python wrapper name for an op: "TFText>RoundRobinTrim" -> tf_text_round_robin_trim."""
    name = op_name.replace(">", "_")
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", name).lower()


def wrapper_calls(python_sources: Iterable[str]) -> frozenset[str]:
    """Names called on modules bound to `load_library.load_op_library(...)` in tensorflow-text's Python."""
    calls = set()
    for source in python_sources:
        for alias in re.findall(r"(\w+)\s*=\s*load_library\.load_op_library\(", source):
            calls.update(re.findall(rf"\b{alias}\s*\.\s*(\w+)\s*\(", source))
    return frozenset(calls)


def text_ops_from_wheel(wheel: Path) -> frozenset[str]:
    """tensorflow-text op names in a wheel, cross-checked against the wheel's own Python and namespace."""
    ops: set[str] = set()
    namespaced: set[str] = set()
    sources = []
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if _OP_LIBRARY.match(member):
                data = archive.read(member)
                ops |= kernel_op_names(data, member)
                namespaced |= {m.decode() for m in _TEXT_NAMESPACE.findall(data)}
            elif member.startswith("tensorflow_text/") and member.endswith(".py"):
                sources.append(archive.read(member).decode("utf-8"))
    if not ops:
        raise ValueError(f"{wheel.name}: no tensorflow-text op libraries found")
    unmatched = wrapper_calls(sources) - {snake_case(op) for op in ops}
    if unmatched:
        raise ValueError(f"{wheel.name}: Python calls op wrappers that have no kernel: {sorted(unmatched)}")
    if namespaced - ops:
        raise ValueError(f"{wheel.name}: TFText ops with no kernel found: {sorted(namespaced - ops)}")
    return frozenset(ops)


def installed_text_libraries() -> list[Path]:
    """The op libraries of the installed tensorflow-text, found without importing it."""
    spec = importlib.util.find_spec("tensorflow_text")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("tensorflow_text is not installed")
    return sorted(Path(spec.origin).parent.glob("python/**/_*.so"))


def loaded_library_ops(library: Path) -> frozenset[str]:
    """The ops a library registers when loaded into this TensorFlow (TF's own account of it)."""
    handle = pywrap_tf_session.TF_LoadLibrary(str(library))
    try:
        op_list = op_def_pb2.OpList.FromString(pywrap_tf_session.TF_GetOpList(handle))
    finally:
        pywrap_tf_session.TF_DeleteLibraryHandle(handle)
    return frozenset(op.name for op in op_list.op)


def check_reader_on_installed_text() -> frozenset[str]:
    """Compare the static reader with loading, library by library; return the ops both agree on."""
    agreed: set[str] = set()
    for library in installed_text_libraries():
        static, loaded = kernel_op_names(library.read_bytes(), library.name), loaded_library_ops(library)
        if static != loaded:
            raise ValueError(
                f"{library.name}: read {sorted(static)} statically, loading gave {sorted(loaded)}"
            )
        agreed |= loaded
    return frozenset(agreed)


def download_text_wheel(directory: Path) -> Path:
    """Fetch the tensorflow-text wheel the server's ops come from, with pip."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", f"tensorflow-text=={SERVER_TEXT_VERSION}",
            "--python-version", "3.10", "--platform", "manylinux_2_17_x86_64", "--only-binary=:all:",
            "-d", str(directory),
        ],
        check=True,
    )  # fmt: skip
    return next(directory.glob(f"tensorflow_text-{SERVER_TEXT_VERSION}-*.whl"))


# --- The allowlist file ------------------------------------------------------------------------------------


def render_allowlist(core: frozenset[str], text: frozenset[str], installed_text: frozenset[str]) -> str:
    """The allowlist file: a header saying how it was made, then one section per source."""
    core_title = f"tensorflow {tf.__version__}"
    text_title = f"tensorflow-text {SERVER_TEXT_VERSION}"
    newer = sorted(installed_text - text)
    header = [
        f"Ops the stock tensorflow_model_server {SERVER_TF_VERSION} can load: TensorFlow's + {text_title}'s.",
        f"Generated on {datetime.date.today().isoformat()} by serving/derive_op_allowlist.py; do not edit.",
        f"Regenerate from the repository root: {REGENERATE_COMMAND}",
        f"[{core_title}] {len(core)} ops: the names in tf.raw_ops (TensorFlow's own generated op",
        "  wrappers, which other libraries' op registrations cannot extend), less ops whose kernels need",
        f"  the Python runtime: {', '.join(sorted(PYTHON_RUNTIME_OPS))}.",
        f"[{text_title}] {len(text)} ops: names its op libraries register kernels for, read statically",
        "  from the manylinux x86-64 cp310 wheel. The same reader agreed with loading on every library of",
        f"  the installed tensorflow-text {version('tensorflow-text')} ({len(installed_text)} ops).",
        "Ops of the installed tensorflow-text that the server lacks:",
        f"  {', '.join(newer) or 'none'}.",
    ]
    lines = [f"# {line}" for line in header]
    for title, ops in ((core_title, core), (text_title, text)):
        lines += ["", f"[{title}]", *sorted(ops)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--text-wheel", type=Path, help=f"a tensorflow-text {SERVER_TEXT_VERSION} wheel")
    source.add_argument("--download", action="store_true", help="fetch that wheel with pip first")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    if not tf.__version__.startswith(SERVER_TF_VERSION + "."):
        parser.error(f"needs tensorflow {SERVER_TF_VERSION}.x, found {tf.__version__}")
    core = core_tf_ops()
    missing = core - registered_op_names()
    if missing:
        parser.error(f"tf.raw_ops names not in the op registry: {sorted(missing)}")
    installed_text = check_reader_on_installed_text()
    with tempfile.TemporaryDirectory() as scratch:
        wheel = download_text_wheel(Path(scratch)) if args.download else args.text_wheel
        text = text_ops_from_wheel(wheel)
    args.output.write_text(render_allowlist(core, text, installed_text))
    print(f"{args.output.name}: {len(core)} TensorFlow ops, {len(text)} tensorflow-text ops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
