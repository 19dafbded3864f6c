"""The driver's corpus fingerprint: stable while the corpus is unchanged, new when a file changes,
appears or goes, and set on the execution by the IR launcher's entry point."""

from __future__ import annotations

import os
from pathlib import Path

from tfx.orchestration.portable import data_types

from components.clinical_example_gen.driver import (
    INPUT_FINGERPRINT,
    InputFingerprintDriver,
    input_fingerprint,
)


def test_fingerprint_follows_the_corpus(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "one"}\n')
    first = input_fingerprint(str(tmp_path), "jsonl")
    assert first == input_fingerprint(str(tmp_path), "jsonl") and first.startswith("1 files")
    (tmp_path / "notes.csv").write_text("ignored: not this format\n")
    assert input_fingerprint(str(tmp_path), "jsonl") == first
    (tmp_path / "b.jsonl").write_text('{"id": "2", "text": "two"}\n')
    second = input_fingerprint(str(tmp_path), "jsonl")
    assert second != first
    stat = os.stat(tmp_path / "a.jsonl")
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "uno"}\n')
    os.utime(tmp_path / "a.jsonl", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert input_fingerprint(str(tmp_path), "jsonl") != second


def test_driver_sets_the_fingerprint_parameter(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "one"}\n')
    info = data_types.ExecutionInfo(exec_properties={"input_base": str(tmp_path), "input_format": "jsonl"})
    output = InputFingerprintDriver(None).run(info)
    assert output.exec_properties[INPUT_FINGERPRINT].string_value == input_fingerprint(str(tmp_path), "jsonl")
