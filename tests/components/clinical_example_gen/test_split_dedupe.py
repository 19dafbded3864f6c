"""Group hash splits (stable, order-free, near the ratios) and duplicate collapsing (deterministic)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from components.clinical_example_gen import report, split
from components.clinical_example_gen.dedupe import merge_duplicates
from components.clinical_example_gen.records import ProcessedNote

SPLITS = split.parse_splits(split.DEFAULT_SPLITS)
REPO = Path(__file__).resolve().parents[3]


def test_splits_are_sorted_by_name_and_validated() -> None:
    assert SPLITS == (("eval", 1), ("test", 1), ("train", 8))
    assert split.parse_splits({"train": 8, "eval": 1, "test": 1}) == split.parse_splits(
        {"test": 1, "eval": 1, "train": 8}
    )
    for bad in ({}, {"train": 0}, {"train": 1.5}, {"train": True}, {"tr ain": 1}, {"../x": 1}):
        with pytest.raises(ValueError, match="splits"):
            split.parse_splits(bad)


def test_a_group_lands_in_the_same_split_whatever_the_order() -> None:
    groups = [f"Patient/{i}" for i in range(2000)]
    first = {group: split.split_index(group, SPLITS) for group in groups}
    shuffled = groups[:]
    random.Random(7).shuffle(shuffled)
    assert {group: split.split_index(group, SPLITS) for group in shuffled} == first
    sizes = Counter(SPLITS[index][0] for index in first.values())
    assert 1400 < sizes["train"] < 1800 and 100 < sizes["eval"] < 300 and 100 < sizes["test"] < 300


def test_the_assignment_does_not_depend_on_the_process() -> None:
    groups = [f"g{i}" for i in range(50)]
    code = (
        "from components.clinical_example_gen import split;"
        f"print([split.split_index(g, {SPLITS!r}) for g in {groups!r}])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str([split.split_index(g, SPLITS) for g in groups])


def _note(note_id: str, group_id: str, labels: tuple[str, ...]) -> ProcessedNote:
    return ProcessedNote(
        note_id, group_id, "same text", ("same text",), labels, f"type-{note_id}", {}, note_id
    )


def test_duplicates_collapse_to_the_smallest_id_with_all_labels() -> None:
    duplicates = [_note("7", "p2", ("b",)), _note("12", "p9", ("a", "b")), _note("3", "p5", ())]
    for order in (duplicates, duplicates[::-1], duplicates[1:] + duplicates[:1]):
        kept, collapsed = merge_duplicates(order)
        # Smallest as strings: "12" < "3" < "7".
        assert (kept.note_id, kept.group_id, kept.note_type) == ("12", "p9", "type-12")
        assert kept.labels == ("a", "b")
        assert collapsed == 2
    assert merge_duplicates([_note("1", "p", ("x",))])[1] == 0


def test_accounting_catches_a_lost_record() -> None:
    counts = {"input_records": 5, "kept_examples": 2, "duplicates_collapsed": 1}
    counts.update({"rejected/oversize": 2, "split/train": 2})
    summary = report.build_summary(counts, ["train", "eval"])
    assert summary["rejected"] == 2 and summary["examples_per_split"] == {"train": 2, "eval": 0}
    report.check_accounting(summary)
    with pytest.raises(report.AccountingError, match="6 input records"):
        report.check_accounting({**summary, "input_records": 6})
    with pytest.raises(report.AccountingError, match="written to splits"):
        report.check_accounting({**summary, "examples_per_split": {"train": 1}})
