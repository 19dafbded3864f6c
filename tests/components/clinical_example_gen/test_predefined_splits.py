"""Official splits kept (`split_source`): by file name or by a field each record carries; duplicates
collapsed within a split only; texts and groups that splits share reported; accounting intact."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import apache_beam as beam
import pytest

from components.clinical_example_gen import executor, records, report, split
from components.clinical_example_gen.component import ClinicalExampleGen
from tests.components.clinical_example_gen.test_executor import checked_summary, run_executor, write_jsonl

OFFICIAL = {"train": ["train*"], "eval": ["devel*", "dev/*"], "test": ["test*"]}


def test_files_keep_their_official_split(tmp_path: Path, caplog) -> None:
    root = tmp_path / "corpus"
    write_jsonl(
        root / "train.jsonl",
        [
            {"id": "t1", "text": "Fever resolved overnight.", "patient": "p1"},
            {"id": "t2", "text": "Cough improving slowly.", "patient": "p2"},
            {"id": "t3", "text": "Cough improving slowly.", "patient": "p3"},
            {"id": "t4", "text": "Rash fading on the left arm.", "patient": "p4"},
        ],
    )
    write_jsonl(
        root / "dev" / "part1.jsonl", [{"id": "d1", "text": "Headache better with rest.", "patient": "p5"}]
    )
    write_jsonl(
        root / "test.jsonl",
        [
            {"id": "x1", "text": "Fever resolved overnight.", "patient": "p6"},
            {"id": "x2", "text": "Wound healing well.", "patient": "p1"},
            {"id": "x3", "text": "Knee swelling reduced.", "patient": "p4"},
        ],
    )
    caplog.set_level(logging.WARNING)

    run = run_executor(
        tmp_path / "out",
        root,
        "jsonl",
        {"group_key": "patient"},
        # The ratios of `splits` give way to the official splits.
        splits={"a": 1, "b": 1},
        split_source={"files": OFFICIAL},
    )

    summary = checked_summary(run)
    notes = run.all_notes()
    ids = {name: sorted(note["note_id"][0] for note in split_notes) for name, split_notes in notes.items()}
    assert ids == {"eval": ["d1"], "test": ["x1", "x2", "x3"], "train": ["t1", "t2", "t4"]}
    # The same text in train and test is kept in both; within train, its duplicate collapses.
    assert summary["kept_examples"] == 7 and summary["duplicates_collapsed"] == 1
    assert summary["texts_in_several_splits"] == 1
    assert summary["groups_in_several_splits"] == 2
    assert summary["groups_in_several_splits_examples"] == ["p1", "p4"]
    assert "2 groups (group_id) are found in more than one predefined split" in caplog.text


def test_files_matching_no_split_or_two_fail_before_the_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for name in ("train.jsonl", "devel.jsonl", "test.jsonl", "extra.jsonl", "test_devel.jsonl"):
        write_jsonl(root / name, [{"id": "n1", "text": "Fever resolved overnight."}])
    pipelines = []

    def make_pipeline() -> beam.Pipeline:
        pipelines.append(True)
        return beam.Pipeline()

    context = executor.Executor.Context(make_beam_pipeline_fn=make_pipeline)
    source = {"files": {"train": ["train*"], "eval": ["devel*", "*_devel*"], "test": ["test*"]}}
    with pytest.raises(ValueError, match=r"extra\.jsonl") as raised:
        run_executor(tmp_path / "out", root, "jsonl", context=context, split_source=source)
    message = str(raised.value)
    assert "1 input files match no split: extra.jsonl" in message
    assert "test_devel.jsonl (eval, test)" in message
    assert "'eval': ['devel*', '*_devel*']" in message
    assert pipelines == []


def test_at_most_ten_files_are_named() -> None:
    source = split.parse_split_source({"files": {"train": ["train*"], "eval": ["dev*"]}})
    names = [f"other{i:02d}.csv" for i in range(12)]
    with pytest.raises(ValueError, match="12 input files match no split") as raised:
        split.split_files(["train.csv", *names], source)
    assert "other09.csv, ..." in str(raised.value) and "other10.csv" not in str(raised.value)
    assert split.split_files(["train.csv", "dev.csv"], source) == {"train.csv": "train", "dev.csv": "eval"}


FIELD = {"field": {"train": ["train"], "eval": ["dev", "devel", "validation"], "test": ["test"]}}


def test_csv_split_column_maps_values_and_rejects_the_unknown(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    long_value = "v" * 60
    rows = [
        "id,patient,split,text",
        "1,p1,train,Fever resolved overnight.",
        "2,p2,devel,Cough improving slowly.",
        "3,p3,validation,Rash fading on the left arm.",
        "4,p4,test,Fever resolved overnight.",
        "5,p5,train,Fever resolved overnight.",
        "6,p6,holdout,Wound healing well.",
        "7,p7,,Knee swelling reduced.",
        f"8,p8,{long_value},Headache better with rest.",
        "9,p3,test,Headache better with rest.",
    ]
    (root / "notes.csv").write_text("\n".join(rows) + "\n")
    config = {"id_column": "id", "text_column": "text", "group_column": "patient", "split_column": "split"}

    run = run_executor(tmp_path / "out", root, "csv", config, split_source=FIELD)

    summary = checked_summary(run)
    ids = {name: sorted(note["note_id"][0] for note in notes) for name, notes in run.all_notes().items()}
    assert ids == {"eval": ["2", "3"], "test": ["4", "9"], "train": ["1"]}
    assert summary["duplicates_collapsed"] == 1 and summary["texts_in_several_splits"] == 1
    assert summary["groups_in_several_splits"] == 1
    assert summary["groups_in_several_splits_examples"] == ["p3"]
    assert summary["rejected_by_reason"] == {records.UNKNOWN_SPLIT: 3}
    rejects = {reject["locator"]: reject["detail"] for reject in run.rejects()}
    assert rejects == {
        "notes.csv:row 6 (id=6)": "holdout",
        "notes.csv:row 7 (id=7)": "missing",
        "notes.csv:row 8 (id=8)": "v" * 40,
    }
    assert all(reject["reason"] == records.UNKNOWN_SPLIT for reject in run.rejects())


def test_jsonl_split_key_maps_values_and_rejects_the_unknown(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_jsonl(
        root / "notes.jsonl",
        [
            {"id": "a", "text": "Fever resolved overnight.", "split": "train"},
            {"id": "b", "text": "Cough improving slowly.", "split": "dev"},
            {"id": "c", "text": "Rash fading on the left arm.", "split": "test"},
            {"id": "d", "text": "Wound healing well.", "split": ["train"]},
            {"id": "e", "text": "Knee swelling reduced."},
            {"id": "f", "text": "Headache better with rest.", "split": "TRAIN"},
        ],
    )

    run = run_executor(tmp_path / "out", root, "jsonl", {"split_key": "split"}, split_source=FIELD)

    summary = checked_summary(run)
    ids = {name: sorted(note["note_id"][0] for note in notes) for name, notes in run.all_notes().items()}
    assert ids == {"eval": ["b"], "test": ["c"], "train": ["a"]}
    assert summary["texts_in_several_splits"] == 0 and summary["groups_in_several_splits"] == 0
    assert summary["groups_in_several_splits_examples"] == []
    details = {reject["locator"]: reject["detail"] for reject in run.rejects()}
    # Values match exactly: a list is no value, and "TRAIN" is not "train".
    assert details == {
        "notes.jsonl:line 4": "missing",
        "notes.jsonl:line 5": "missing",
        "notes.jsonl:line 6": "TRAIN",
    }
    files = json.loads((Path(run.report.uri) / "files.jsonl").read_text())
    assert files == {"file": "notes.jsonl", "records": 6, "notes": 3, "rejected": 3, "skipped": 0}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ([], "JSON object"),
        ({"files": {"train": ["a"]}, "field": {"train": ["a"]}}, "one key"),
        ({"column": {"train": ["a"]}}, "one key"),
        ({"files": ["train*"]}, "expected an object"),
        ({"files": {"train": ["a"], "eval": "b"}}, "'eval' needs a non-empty list"),
        ({"files": {"train": ["a"], "eval": []}}, "'eval' needs a non-empty list"),
        ({"files": {"train": ["a"], "eval": [3]}}, "other than non-empty strings"),
        ({"files": {"train": ["a"], "eval": ["b"], "te st": ["c"]}}, "letters, digits"),
        ({"files": {"train": ["a"], "test": ["b"]}}, r"\['eval'\] are required"),
        ({"field": {"train": ["a"], "eval": ["b", "a"]}}, "'a' is listed for 'eval' and 'train'"),
    ],
)
def test_malformed_split_sources_are_refused(source, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split.parse_split_source(source)


def test_the_component_records_and_checks_the_split_source() -> None:
    config = {"id_column": "id", "text_column": "text", "split_column": "split"}
    component = ClinicalExampleGen("corpus/", "csv", config, split_source=FIELD)
    assert json.loads(component.exec_properties["split_source"]) == FIELD
    assert ClinicalExampleGen("corpus/", "jsonl").exec_properties["split_source"] == "{}"
    with pytest.raises(ValueError, match="needs 'split_column'"):
        ClinicalExampleGen("corpus/", "csv", {"id_column": "id", "text_column": "text"}, split_source=FIELD)
    with pytest.raises(ValueError, match="'text_dir' reader reads no split"):
        ClinicalExampleGen("corpus/", "text_dir", split_source=FIELD)
    with pytest.raises(ValueError, match="required"):
        ClinicalExampleGen("corpus/", "text_dir", split_source={"files": {"train": ["*"]}})
    params = executor.IngestParams.from_exec_properties(
        {"input_base": "x", "input_format": "jsonl", "split_source": json.dumps({"files": OFFICIAL})}
    )
    assert params.split_names == ("eval", "test", "train")
    assert executor.IngestParams.from_exec_properties(
        {"input_base": "x", "input_format": "jsonl"}
    ).split_names == (
        "eval",
        "test",
        "train",
    )


def test_hash_summaries_are_unchanged_and_predefined_ones_account_the_same() -> None:
    counts = {
        "input_records": 4,
        "kept_examples": 3,
        "duplicates_collapsed": 1,
        "split/train": 2,
        "split/eval": 1,
    }
    assert "texts_in_several_splits" not in report.build_summary(counts, ["eval", "train"])
    shared = {f"several_splits_group/g{i:02d}": 1 for i in range(25)}
    predefined = report.build_summary(
        {**counts, "groups_in_several_splits": 25, **shared}, ["eval", "train"], True
    )
    assert predefined["texts_in_several_splits"] == 0 and predefined["groups_in_several_splits"] == 25
    assert predefined["groups_in_several_splits_examples"] == [f"g{i:02d}" for i in range(20)]
    report.check_accounting(predefined)
