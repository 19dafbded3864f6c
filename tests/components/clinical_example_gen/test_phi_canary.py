"""Canary: identifiers planted in a corpus never reach the written examples.

Synthetic notes with planted PHI (tests/components/phi_synth.py) and MIMIC-style placeholders go
through the whole ExampleGen executor; every output file, decompressed, is searched for each planted
value and for the digit runs inside it.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

from tests.components.clinical_example_gen.test_executor import run_executor
from tests.components.phi_synth import make_phi_corpus

MIMIC_PLACEHOLDERS = (
    "[**2101-10-20**]",
    "[**Last Name (NamePattern1) 4321**]",
    "[**Hospital1 18**]",
    "[**Telephone/Fax (1) 5551**]",
    "[**Medical Record Number 8872**]",
)


def _output_text(root: Path) -> str:
    parts = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            parts.append((gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8", "replace"))
    return "\n".join(parts)


def test_no_planted_identifier_reaches_the_examples(tmp_path: Path) -> None:
    notes = make_phi_corpus(60, seed=2024)
    corpus = tmp_path / "notes.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for index, note in enumerate(notes):
            placeholder = MIMIC_PLACEHOLDERS[index % len(MIMIC_PLACEHOLDERS)]
            record = {
                "id": f"n{index}",
                "text": f"{note.text}\nSeen at {placeholder} today.",
                "group": f"p{index}",
            }
            f.write(json.dumps(record) + "\n")

    run = run_executor(tmp_path / "out", corpus, "jsonl", {"group_key": "group"})
    assert run.summary["kept_examples"] == len(notes)
    written = _output_text(tmp_path / "out")
    # Short values (ages such as "95") occur inside unrelated text; they are checked by count below.
    planted = {note.text[span.start : span.end] for note in notes for span in note.phi}
    planted = {value for value in planted if len(value) >= 6}
    assert len(planted) > 100
    leaked = sorted(value for value in planted if value in written)
    assert leaked == [], f"{len(leaked)} planted identifiers reached the output"
    digit_runs = {run for value in planted for run in re.findall(r"\d{5,}", value)}
    assert digit_runs and not [run for run in digit_runs if run in written]
    assert "[**" not in written
    counts = run.summary["phi_replacements"]
    ages = sum(span.kind == "age" for note in notes for span in note.phi)
    assert ages and counts.get("[AGE]", 0) >= ages
    assert counts.get("[HOSPITAL]", 0) >= 12 and counts.get("[PHONE]", 0) >= 12
