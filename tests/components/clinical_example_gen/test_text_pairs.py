"""Text pairs (a question and its passage) through the ExampleGen: read from CSV and JSONL, rejected when
the second text is missing, scrubbed like the first, deduplicated as pairs, written as `text_b`; and
the bundled PubMedQA sample ingested with its official splits. Single-text examples are unchanged."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import tensorflow as tf

from components.clinical_example_gen import examples, records, text_steps
from components.clinical_example_gen.records import NoteRecord, ProcessedNote, Reject
from components.clinical_text import phi_tokens
from tests.components.clinical_example_gen.test_executor import (
    REPO,
    checked_summary,
    run_executor,
    write_jsonl,
)
from tests.components.clinical_example_gen.test_readers import notes, read

PAIRS_JSONL = {"id_key": "id", "text_key": "question", "text_b_key": "context"}
PAIRS_CSV = {"id_column": "id", "text_column": "question", "text_b_column": "context"}


def _details(items) -> dict[str, tuple[str, str]]:
    return {item.locator: (item.reason, item.detail) for item in items if isinstance(item, Reject)}


def test_csv_pairs_are_read_and_a_row_missing_its_second_text_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(
        "id,question,context\n"
        '1,Does rest help?,"Rest helped.\nPain fell."\n'
        "2,Is fever common?,   \n"
        "3,Is cough common?,\n"
    )
    got = read("csv", path, PAIRS_CSV)
    assert [(n.note_id, n.text, n.text_b) for n in notes(got)] == [
        ("1", "Does rest help?", "Rest helped.\nPain fell.")
    ]
    assert _details(got) == {
        "pairs.csv:row 2 (id=2)": (records.MISSING_FIELD, "context"),
        "pairs.csv:row 3 (id=3)": (records.MISSING_FIELD, "context"),
    }
    # Without the column configured the same file is single texts, and the second text is never read.
    single = notes(read("csv", path, {"id_column": "id", "text_column": "question"}))
    assert len(single) == 3 and all(note.text_b is None for note in single)


def test_a_configured_second_column_absent_from_the_header_rejects_every_row(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("id,question\n1,Does rest help?\n")
    assert _details(read("csv", path, PAIRS_CSV)) == {"pairs.csv:row 1": (records.MISSING_COLUMN, "context")}


def test_jsonl_pairs_join_a_list_and_reject_a_missing_second_text(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"id": 1, "question": "Does rest help?", "context": "Rest helped."},
            {"id": 2, "question": "Is fever common?", "context": ["Fever was seen.", "It resolved."]},
            {"id": 3, "question": "Is cough common?"},
            {"id": 4, "question": "Is rash common?", "context": None},
            {"id": 5, "question": "Is pain common?", "context": 42},
            {"id": 6, "question": "Is nausea common?", "context": " \n "},
            {"id": 7, "question": "Is fatigue common?", "context": []},
            {"id": 8, "question": "Is itch common?", "context": ["Itch was seen.", 3]},
            {"id": 9, "question": "Is chill common?", "context": ["", " "]},
            {"id": 10, "question": "  ", "context": "Empty question."},
        ],
    )
    got = read("jsonl", path, PAIRS_JSONL)
    assert [(n.note_id, n.text, n.text_b) for n in notes(got)] == [
        ("1", "Does rest help?", "Rest helped."),
        ("2", "Is fever common?", "Fever was seen.\nIt resolved."),
    ]
    missing = (records.MISSING_FIELD, "context")
    assert _details(got) == {
        **{f"pairs.jsonl:line {line}": missing for line in range(3, 10)},
        "pairs.jsonl:line 10": (records.EMPTY_TEXT, ""),
    }


def test_both_texts_count_toward_the_size_limit(tmp_path: Path) -> None:
    question, context = "q" * 60, "c" * 50
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"id": 1, "question": question, "context": context}])
    assert notes(read("jsonl", path, PAIRS_JSONL, max_bytes=110))[0].text_b == context
    assert _details(read("jsonl", path, PAIRS_JSONL, max_bytes=109)) == {
        "pairs.jsonl:line 1": (records.OVERSIZE, "")
    }
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(f"id,question,context\n1,{question},{context}\n")
    assert _details(read("csv", csv_path, PAIRS_CSV, max_bytes=109)) == {
        "pairs.csv:row 1 (id=1)": (records.OVERSIZE, "")
    }


def _pair(question: str, context: str) -> NoteRecord:
    return NoteRecord("n1", "g1", question, ("yes",), {}, "pairs.jsonl:line 1", text_b=context)


def test_the_second_text_is_scrubbed_counted_and_not_segmented() -> None:
    note = text_steps.TextSteps()(
        _pair("Was the pager used?", "Staff were paged at 617-555-0123.\r\nAll\x00 replied. Few waited.")
    )
    assert isinstance(note, ProcessedNote)
    assert note.text_b == "Staff were paged at [PHONE].\nAll replied. Few waited."
    assert note.phi_counts == {phi_tokens.PHONE: 1}
    # The sentences are the first text's alone; spans (none here) only ever point into it.
    assert note.sentences == ("Was the pager used?",) and note.spans is None
    both = text_steps.TextSteps()(_pair("Call 617-555-0123?", "Or 617-555-0199."))
    assert both.phi_counts == {phi_tokens.PHONE: 2}
    assert "text_b" not in repr(both) and "617" not in repr(both)


def test_a_second_text_emptied_by_processing_is_empty_text() -> None:
    result = text_steps.TextSteps()(_pair("Does rest help?", "\x00 \u200b\n"))
    assert result == Reject("pairs.jsonl:line 1", records.EMPTY_TEXT, "text_b")


def test_pairs_are_duplicates_only_when_both_texts_are_equal(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_jsonl(
        root / "pairs.jsonl",
        [
            {"id": "a", "question": "Does rest help?", "context": "Rest helped."},
            {"id": "b", "question": "Does rest help?", "context": "Rest did not help."},
            {"id": "c", "question": "Does rest help?", "context": "Rest helped.", "label": "maybe"},
            {"id": "d", "question": "Does rest help?", "context": "   ", "label": "no"},
            {"id": "e", "question": "Rest helped.", "context": "Does rest help?"},
            {"id": "f", "question": "Is fever common?", "context": ["Fever was seen.", "It resolved."]},
            {"id": "g", "question": "Is fever common?", "context": "Fever was seen.\nIt resolved."},
        ],
    )
    run = run_executor(tmp_path / "out", root, "jsonl", {**PAIRS_JSONL, "labels_key": "label"})

    summary = checked_summary(run)
    kept = {note["note_id"][0]: note for split in run.all_notes().values() for note in split}
    # a and c collapse (both texts equal), as do f and g (the list joins to g's text); b and e stay.
    assert sorted(kept) == ["a", "b", "e", "f"]
    assert kept["a"]["labels"] == ["maybe"] and kept["a"]["text_b"] == ["Rest helped."]
    assert summary["kept_examples"] == 4 and summary["duplicates_collapsed"] == 2
    assert summary["rejected_by_reason"] == {records.MISSING_FIELD: 1}
    assert run.rejects() == [
        {"locator": "pairs.jsonl:line 4", "reason": records.MISSING_FIELD, "detail": "context"}
    ]


def _single(spans: tuple[records.Span, ...] | None = None) -> ProcessedNote:
    return ProcessedNote(
        "n1",
        "g1",
        "Rest helped. Pain fell.",
        ("Rest helped.", "Pain fell."),
        ("yes",),
        "Nursing",
        {},
        "x",
        spans=spans,
    )


def _feature(values: list) -> tf.train.Feature:
    if values and isinstance(values[0], int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode() for value in values]))


def test_single_text_examples_are_as_before_and_pairs_add_only_text_b() -> None:
    # What `to_example` wrote for a single text before pairs existed, feature by feature.
    before = {
        "note_id": ["n1"],
        "group_id": ["g1"],
        "text": ["Rest helped. Pain fell."],
        "sentences": ["Rest helped.", "Pain fell."],
        "labels": ["yes"],
        "note_type": ["Nursing"],
        "num_chars": [23],
        "num_sentences": [2],
    }
    expected = tf.train.Example(
        features=tf.train.Features(feature={key: _feature(values) for key, values in before.items()})
    )
    single = examples.to_example(_single())
    assert sorted(single.features.feature) == sorted(before)
    assert single.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    spanned = examples.to_example(_single((records.Span(0, 4, "Finding"),)))
    assert examples.TEXT_B not in spanned.features.feature

    pair = examples.to_example(dataclasses.replace(_single(), text_b="Was rest enough?"))
    features = pair.features.feature
    assert set(features) == {*before, examples.TEXT_B}
    assert features[examples.TEXT_B].bytes_list.value == [b"Was rest enough?"]
    # num_chars and sentences stay the first text's.
    assert features["num_chars"].int64_list.value == [23] and features["num_sentences"].int64_list.value == [
        2
    ]
    del features[examples.TEXT_B]
    assert pair.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)


PUBMEDQA_CONFIG = {
    "id_key": "id",
    "text_key": "question",
    "text_b_key": "context",
    "labels_key": "label",
    "split_key": "split",
}
PUBMEDQA_SPLITS = {"field": {"train": ["train"], "eval": ["dev"], "test": ["test"]}}


def test_the_bundled_pubmedqa_sample_keeps_its_splits_as_pairs(tmp_path: Path) -> None:
    sample = REPO / "data" / "sample" / "pubmedqa_sample.jsonl"
    lines = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines()]
    by_split = {"train": set(), "eval": set(), "test": set()}
    for line in lines:
        by_split[{"dev": "eval"}.get(line["split"], line["split"])].add(line["id"])
    assert {name: len(ids) for name, ids in by_split.items()} == {"train": 145, "eval": 15, "test": 40}

    run = run_executor(tmp_path, sample, "jsonl", PUBMEDQA_CONFIG, split_source=PUBMEDQA_SPLITS)

    summary = checked_summary(run)
    assert summary["input_records"] == len(lines) and summary["rejected"] == 0
    written = run.all_notes()
    assert {name: {note["note_id"][0] for note in split} for name, split in written.items()} == by_split
    labels = {line["id"]: [line["label"]] for line in lines}
    for split in written.values():
        for note in split:
            assert len(note["text_b"]) == 1 and note["text_b"][0].strip()
            assert note["labels"] == labels[note["note_id"][0]]


def _make_sample(*args: str) -> list[dict]:
    script = REPO / "data" / "make_pubmedqa_sample.py"
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True, text=True)
    return [json.loads(line) for line in Path(args[1]).read_text(encoding="utf-8").splitlines()]


def test_the_pubmedqa_maker_is_deterministic_and_takes_the_first_pmids_by_number(tmp_path: Path) -> None:
    source = tmp_path / "pubmedqa"
    source.mkdir()
    pmids = [str(number) for number in range(9_999_980, 10_000_020)]
    instances = {
        pmid: {
            "QUESTION": f"Question {pmid}?",
            "CONTEXTS": ["Part one.", "Part two."],
            "final_decision": "yes",
        }
        for pmid in pmids
    }
    (source / "ori_pqal.json").write_text(json.dumps(instances))
    test_ids = pmids[::4]
    (source / "test_ground_truth.json").write_text(json.dumps(dict.fromkeys(test_ids, "yes")))

    full = _make_sample(str(source), str(tmp_path / "full.jsonl"))
    assert full == _make_sample(str(source), str(tmp_path / "again.jsonl"))
    assert [line["id"] for line in full] == pmids  # numeric order: 7-digit PMIDs before 8-digit ones
    assert full[0] == {
        "id": pmids[0],
        "question": f"Question {pmids[0]}?",
        "context": ["Part one.", "Part two."],
        "label": "yes",
        "split": "test",
    }
    splits = {line["id"]: line["split"] for line in full}
    assert {pmid for pmid, split in splits.items() if split == "test"} == set(test_ids)
    assert {splits[pmid] for pmid in pmids if pmid not in test_ids} == {"train", "dev"}

    sampled = _make_sample(str(source), str(tmp_path / "sample.jsonl"), "--train", "5", "--test", "2")
    others = [pmid for pmid in pmids if pmid not in test_ids]
    assert [line["id"] for line in sampled] == sorted(others[:5] + test_ids[:2], key=int)
    assert all(line == next(f for f in full if f["id"] == line["id"]) for line in sampled)
