"""Check that a SavedModel uses only ops the stock TF Serving 2.16 model server can load.

The server links TensorFlow 2.16's ops and tensorflow-text 2.12.1's, so a graph built with a newer
tensorflow-text (or with `tf.py_function`) can export fine and still fail to load in the server. The check
reads `saved_model.pb` as a protobuf, without loading the model, and compares every op type in it with
the committed allowlist (see `derive_op_allowlist.py` for how that list is made).

    python -m serving.op_allowlist EXPORT_DIR    # exit status 1 when any op is not allowed
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import message, text_format
from tensorflow.core.protobuf import saved_model_pb2

DEFAULT_ALLOWLIST = Path(__file__).with_name("model_server_2.16_ops.txt")


class UnservableModelError(ValueError):
    """A SavedModel uses ops the model server does not have."""


@dataclass(frozen=True)
class OpCheckResult:
    """The op types a SavedModel uses and, sorted, those the allowlist lacks."""

    export_dir: str
    ops_used: frozenset[str]
    disallowed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.disallowed


def read_saved_model(export_dir: str | Path) -> saved_model_pb2.SavedModel:
    """Parse `saved_model.pb` (or `saved_model.pbtxt`) in `export_dir`."""
    export_dir = Path(export_dir)
    binary, text = export_dir / "saved_model.pb", export_dir / "saved_model.pbtxt"
    if binary.is_file():
        return saved_model_pb2.SavedModel.FromString(binary.read_bytes())
    if text.is_file():
        return text_format.Parse(text.read_text(), saved_model_pb2.SavedModel())
    raise FileNotFoundError(f"{export_dir}: no saved_model.pb or saved_model.pbtxt")


def saved_model_ops(export_dir: str | Path) -> set[str]:
    """Every op type in every meta graph: its graph's nodes and the nodes of every library function.

    The function library is flat, so functions nested in other functions (while-loop bodies, cond
    branches, tf.functions calling tf.functions) are all in it. A node whose type names a library
    function is a call to that function, not an op, so it is left out.
    """
    ops: set[str] = set()
    for meta_graph in read_saved_model(export_dir).meta_graphs:
        graph = meta_graph.graph_def
        functions = {function.signature.name for function in graph.library.function}
        graph_ops = {node.op for node in graph.node}
        for function in graph.library.function:
            graph_ops.update(node.op for node in function.node_def)
        ops |= graph_ops - functions
    return ops


def load_allowlist_sections(path: str | Path = DEFAULT_ALLOWLIST) -> dict[str, frozenset[str]]:
    """The allowlist's op names by source section (`[tensorflow 2.16.2]`, `[tensorflow-text 2.12.1]`)."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], set())
        elif current is None or any(c.isspace() for c in line):
            raise ValueError(f"{Path(path).name} line {number}: expected an op name inside a [section]")
        else:
            current.add(line)
    return {title: frozenset(ops) for title, ops in sections.items()}


def load_allowlist(path: str | Path = DEFAULT_ALLOWLIST) -> frozenset[str]:
    """All op names the model server can load."""
    return frozenset().union(*load_allowlist_sections(path).values())


def check_saved_model(export_dir: str | Path, allowlist: frozenset[str] | None = None) -> OpCheckResult:
    """Compare a SavedModel's ops with the allowlist (the committed one unless given)."""
    allowed = load_allowlist() if allowlist is None else allowlist
    used = saved_model_ops(export_dir)
    return OpCheckResult(str(export_dir), frozenset(used), tuple(sorted(used - allowed)))


def assert_servable(export_dir: str | Path, allowlist: frozenset[str] | None = None) -> None:
    """Raise `UnservableModelError` naming the ops the model server would not find."""
    result = check_saved_model(export_dir, allowlist)
    if not result.ok:
        raise UnservableModelError(
            f"{export_dir}: {len(result.disallowed)} op(s) not in the TF Serving 2.16 allowlist: "
            + ", ".join(result.disallowed)
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a SavedModel's ops against TF Serving 2.16's.")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--allowlist", type=Path, default=DEFAULT_ALLOWLIST)
    args = parser.parse_args(argv)
    try:
        result = check_saved_model(args.export_dir, load_allowlist(args.allowlist))
    except (FileNotFoundError, ValueError, message.DecodeError, text_format.ParseError) as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{result.export_dir}: {len(result.ops_used)} op types used")
    if result.ok:
        print("all are in the TF Serving 2.16 allowlist")
        return 0
    print(f"{len(result.disallowed)} not in the TF Serving 2.16 allowlist:")
    for op in result.disallowed:
        print(f"  {op}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
