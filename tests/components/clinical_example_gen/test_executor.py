"""The executor's `Do()` on temp-dir artifacts: the shipped sample end to end, a broken corpus in every
format (accounting, reasons, locators, no note text in any output or log), and split stability."""

from __future__ import annotations

import base64
import csv
import dataclasses
import gzip
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components.clinical_example_gen import executor, readers, records
from components.clinical_example_gen import report as report_lib
from components.clinical_example_gen.artifacts import IngestReport
from components.clinical_text import phi_tokens

REPO = Path(__file__).resolve().parents[3]
CANARY = "CANARY-5f1e-note-text"
TEN_MB = 10 * 1024 * 1024


@dataclasses.dataclass
class Run:
    examples: standard_artifacts.Examples
    report: IngestReport
    out: Path

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((Path(self.report.uri) / "summary.json").read_text())

    def rejects(self) -> list[dict[str, str]]:
        text = (Path(self.report.uri) / "rejects.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines()]

    def split(self, name: str) -> list[dict[str, Any]]:
        files = [str(p) for p in Path(artifact_utils.get_split_uri([self.examples], name)).glob("*.gz")]
        notes = []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
            features = tf.train.Example.FromString(record).features.feature
            note = {
                key: list(feature.bytes_list.value or feature.int64_list.value)
                for key, feature in features.items()
            }
            notes.append(
                {
                    key: [v.decode() if isinstance(v, bytes) else v for v in values]
                    for key, values in note.items()
                }
            )
        return notes

    def all_notes(self) -> dict[str, list[dict[str, Any]]]:
        names = artifact_utils.decode_split_names(self.examples.split_names)
        return {name: self.split(name) for name in names}


def run_executor(
    out: Path,
    input_base: Path,
    input_format: str,
    reader_config: dict | None = None,
    context: executor.Executor.Context | None = None,
    **params,
) -> Run:
    examples = standard_artifacts.Examples()
    examples.uri = str(out / "examples")
    report = IngestReport()
    report.uri = str(out / "report")
    exec_properties = {
        "input_base": str(input_base),
        "input_format": input_format,
        "reader_config": json.dumps(reader_config or {}),
        **{key: json.dumps(value) if isinstance(value, dict) else value for key, value in params.items()},
    }
    executor.Executor(context).Do({}, {"examples": [examples], "report": [report]}, exec_properties)
    return Run(examples, report, out)


def write_jsonl(path: Path, lines: list[object]) -> Path:
    """One JSON value a line, in a new file (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def checked_summary(run: Run) -> dict:
    """summary.json, after checking its accounting and that it matches what was written."""
    summary = run.summary
    files = [json.loads(line) for line in (Path(run.report.uri) / "files.jsonl").read_text().splitlines()]
    report_lib.check_accounting(summary, files)
    assert {name: len(notes) for name, notes in run.all_notes().items()} == summary["examples_per_split"]
    return summary


def test_shipped_mtsamples_end_to_end(tmp_path: Path) -> None:
    sample = REPO / "data" / "sample" / "mtsamples_sample.csv"
    with sample.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    specialties = defaultdict(set)
    for row in rows:
        specialties[row["sample_id"]].add(row["medical_specialty"].strip())

    run = run_executor(tmp_path, sample, "csv", dataclasses.asdict(readers.MTSAMPLES_CSV))

    summary = run.summary
    assert summary["input_records"] == len(rows)
    assert (
        summary["input_records"]
        == summary["kept_examples"] + summary["duplicates_collapsed"] + summary["rejected"]
    )
    assert summary["rejected"] == 0 and run.rejects() == []
    assert summary["kept_examples"] == len({row["transcription"] for row in rows})
    assert set(summary["phi_replacements"]) <= set(phi_tokens.PHI_TOKENS)
    notes = run.all_notes()
    assert sorted(notes) == ["eval", "test", "train"]
    assert {name: len(split) for name, split in notes.items()} == summary["examples_per_split"]
    groups = {name: {note["group_id"][0] for note in split} for name, split in notes.items()}
    assert not (
        groups["train"] & groups["eval"]
        or groups["train"] & groups["test"]
        or groups["eval"] & groups["test"]
    )
    flat = [note for split in notes.values() for note in split]
    assert len({note["note_id"][0] for note in flat}) == len(flat)
    for note in flat:
        assert note["labels"] == sorted(specialties[note["note_id"][0]])
        assert note["num_chars"] == [len(note["text"][0])]
        assert note["num_sentences"] == [len(note["sentences"])] and note["sentences"]
        assert note["note_type"] == [""]
    assert any(len(note["labels"]) > 1 for note in flat)
    assert not (Path(run.report.uri) / ".counts").exists()
    assert run.report.get_int_custom_property("input_records") == len(rows)


@dataclasses.dataclass
class Corpus:
    input_format: str
    reader_config: dict[str, Any]
    #: locator -> reason
    rejects: dict[str, str]
    #: note_id -> labels of the examples written
    kept: dict[str, list[str]]
    #: Records collapsed into one of `kept`.
    duplicates: int
    #: What else the format's notes must show.
    check: Callable[[dict[str, dict[str, Any]], dict[str, Any]], None] | None = None


def _csv_corpus(root: Path) -> Corpus:
    body = b"note_id,patient,category,text\n"
    body += b'n1,p1,Cardiology,"Patient seen today. Stable."\n'
    body += b'n0,p2,Neurology,"Patient seen today. Stable."\n'
    body += b'n3,p3,Cardiology,"Chest pain\x00 resolved."\n'
    body += b'n4,p4,Cardiology,"' + CANARY.encode() + b' bad \xff byte"\n'
    body += b"n5,p5,Cardiology," + CANARY.encode() + b",too,many\n"
    body += b'n6,p6,Cardiology,"   "\n'
    body += b',p7,Cardiology,"' + CANARY.encode() + b' has no id"\n'
    body += b'n8,p8,Cardiology,"' + CANARY.encode() + b"x" * TEN_MB + b'"\n'
    body += b'n9,p9,Cardiology,"' + CANARY.encode() + b" never closed\n"
    (root / "broken.csv").write_bytes(body)
    config = {
        "id_column": "note_id",
        "text_column": "text",
        "label_column": "category",
        "group_column": "patient",
    }
    expected = {
        "broken.csv:row 4": records.UNREADABLE_ENCODING,
        "broken.csv:row 5": records.MALFORMED_CSV_ROW,
        "broken.csv:row 6 (note_id=n6)": records.EMPTY_TEXT,
        "broken.csv:row 7": records.MISSING_FIELD,
        "broken.csv:row 8": records.OVERSIZE,
        "broken.csv:row 9": records.MALFORMED_CSV_ROW,
    }
    return Corpus("csv", config, expected, {"n0": ["Cardiology", "Neurology"], "n3": ["Cardiology"]}, 1)


def _jsonl_corpus(root: Path) -> Corpus:
    canary = CANARY.encode()
    lines = [
        b'{"id": "j1", "text": "Fever resolved overnight.", "labels": "a"}',
        b'{"id": "j2", "text": "Fever resolved overnight.", "labels": ["b"]}',
        b'{"id": "j3", "text": "Cough\\u0000 improving\x00 slowly."}',
        b'{"id": "j4", "text": "' + canary + b' \xc3\x28"}',
        b'{"id": "j5", "text": "' + canary + b'",}',
        b'{"id": "j6", "body": "' + canary + b'"}',
        b'{"id": "j7", "text": ""}',
        b'{"id": "j8", "text": "' + canary + b"x" * TEN_MB + b'"}',
        b"",
        b'["' + canary + b'"]',
        b'{"id": "j11", "text": "' + canary + b" truncated",
    ]
    (root / "broken.jsonl").write_bytes(b"\n".join(lines))
    expected = {
        "broken.jsonl:line 4": records.UNREADABLE_ENCODING,
        "broken.jsonl:line 5": records.MALFORMED_JSON,
        "broken.jsonl:line 6": records.MISSING_FIELD,
        "broken.jsonl:line 7": records.EMPTY_TEXT,
        "broken.jsonl:line 8": records.OVERSIZE,
        "broken.jsonl:line 10": records.MALFORMED_JSON,
        "broken.jsonl:line 11": records.MALFORMED_JSON,
    }
    return Corpus("jsonl", {"labels_key": "labels"}, expected, {"j1": ["a", "b"], "j3": []}, 1)


def _text_dir_corpus(root: Path) -> Corpus:
    for folder in ("p1", "p2", "p3"):
        (root / folder).mkdir()
    (root / "p1" / "a.txt").write_text("Abdomen soft. No tenderness.")
    (root / "p2" / "b.txt").write_text("Abdomen soft. No tenderness.")
    (root / "p1" / "c.txt").write_bytes(b"Wound\x00 healing well.")
    (root / "p2" / "bad.txt").write_bytes(CANARY.encode() + b" \xff\xfe")
    (root / "p3" / "empty.txt").write_text("  \n \x00 ")
    (root / "p3" / "big.txt").write_bytes(CANARY.encode() + b"x" * TEN_MB)
    expected = {
        "p2/bad.txt": records.UNREADABLE_ENCODING,
        "p3/empty.txt": records.EMPTY_TEXT,
        "p3/big.txt": records.OVERSIZE,
    }
    config = {"group_pattern": r"^(?P<group>p\d+)/"}
    return Corpus("text_dir", config, expected, {"p1/a.txt": [], "p1/c.txt": []}, 1)


def _doc(doc_id: str, data: bytes | None, content_type: str = "text/plain", **fields: Any) -> dict[str, Any]:
    attachment: dict[str, Any] = {"contentType": content_type}
    if data is not None:
        attachment["data"] = base64.b64encode(data).decode()
    return {
        "resourceType": "DocumentReference",
        "id": doc_id,
        "status": "current",
        "subject": {"reference": f"Patient/{doc_id}"},
        "type": {"text": "Clinic note"},
        "content": [{"attachment": attachment}],
        **fields,
    }


def _fhir_corpus(root: Path) -> Corpus:
    canary = CANARY.encode()
    by_url = _doc("d2", None, description=CANARY)
    by_url["content"][0]["attachment"]["url"] = "https://example.org/d2"
    invalid = _doc("d3", canary)
    del invalid["status"]
    entries = [
        {"resourceType": "Patient", "id": "p1"},
        _doc("d1", b"Headache improved with rest."),
        by_url,
        invalid,
        _doc("d4", canary, "application/pdf"),
        _doc("d5", b"Headache improved with rest."),
        _doc("d6", canary + b"x" * TEN_MB),
        _doc("d7", canary + " café".encode("latin-1"), "text/plain; charset=utf-8"),
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": e} for e in entries]}
    (root / "bundle.json").write_text(json.dumps(bundle))
    (root / "notes.ndjson").write_text(
        json.dumps(_doc("n1", b"Rash\x00 fading."))
        + "\n"
        + '{"id": "'
        + CANARY
        + '",\n'
        + json.dumps(_doc("n3", canary))[:-40]
    )
    (root / "broken.json").write_text('{"resourceType": "DocumentReference", "note": "' + CANARY)
    expected = {
        "broken.json": records.MALFORMED_JSON,
        "bundle.json:entry 2": records.ATTACHMENT_BY_URL,
        "bundle.json:entry 3": records.INVALID_FHIR_RESOURCE,
        "bundle.json:entry 4": records.UNSUPPORTED_ATTACHMENT,
        "bundle.json:entry 6": records.OVERSIZE,
        "bundle.json:entry 7": records.UNREADABLE_ENCODING,
        "notes.ndjson:line 2": records.MALFORMED_JSON,
        "notes.ndjson:line 3": records.MALFORMED_JSON,
    }
    return Corpus("fhir", {}, expected, {"d1": ["Clinic note"], "n1": ["Clinic note"]}, 1, _check_fhir)


def _check_fhir(notes: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    # The Patient resource is not a note: counted as skipped by its type, never rejected or lost.
    assert summary["skipped_not_notes"] == 1
    assert summary["skipped_by_type"] == {"Patient": 1}


def _check_mimic(notes: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    assert notes["1"]["note_type"] == ["Discharge summary"] and notes["1"]["group_id"] == ["10"]
    assert phi_tokens.DATE in notes["1"]["text"][0] and "[**" not in notes["1"]["text"][0]
    assert summary["phi_replacements"][phi_tokens.DATE] >= 1


def _mimic_corpus(root: Path) -> Corpus:
    header = (
        b"ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT\n"
    )
    body = header
    body += b'1,10,100,2101-03-04,,,Discharge summary,Report,,,"Admitted [**2101-3-4**].\nDischarged home."\n'
    body += b'2,10,100,2101-03-04,,,Nursing,Generic,5,1,"' + CANARY.encode() + b' entered in error"\n'
    body += b'3,11,101,2101-03-05,,,Radiology,CT,,,"' + CANARY.encode() + b"x" * TEN_MB + b'"\n'
    body += b'4,12,102,2101-03-06,,,ECG,Report,,,"Sinus rhythm."\n'
    (root / "NOTEEVENTS.csv").write_bytes(body)
    expected = {
        "NOTEEVENTS.csv:row 2 (ROW_ID=2)": records.MARKED_ERROR,
        "NOTEEVENTS.csv:row 3": records.OVERSIZE,
    }
    return Corpus("mimic", {}, expected, {"1": ["Discharge summary"], "4": ["ECG"]}, 0, _check_mimic)


def _output_bytes(root: Path) -> list[tuple[Path, bytes]]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found.append((path, gzip.decompress(data) if path.suffix == ".gz" else data))
    return found


@pytest.mark.parametrize("build", [_csv_corpus, _jsonl_corpus, _text_dir_corpus, _fhir_corpus, _mimic_corpus])
def test_broken_corpus_is_accounted_for_without_leaking_text(tmp_path: Path, build, caplog, capfd) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    corpus = build(root)
    caplog.set_level(logging.INFO)

    run = run_executor(tmp_path / "out", root, corpus.input_format, corpus.reader_config)

    summary = run.summary
    assert (
        summary["input_records"]
        == summary["kept_examples"]
        + summary["duplicates_collapsed"]
        + summary["rejected"]
        + summary["skipped_not_notes"]
    )
    rejects = run.rejects()
    assert {r["locator"]: r["reason"] for r in rejects} == corpus.rejects
    assert summary["rejected"] == len(rejects) == len(corpus.rejects)
    assert summary["rejected_by_reason"] == dict(Counter(corpus.rejects.values()))
    notes = {note["note_id"][0]: note for split in run.all_notes().values() for note in split}
    assert {note_id: note["labels"] for note_id, note in notes.items()} == corpus.kept
    assert summary["kept_examples"] == len(corpus.kept)
    assert summary["duplicates_collapsed"] == corpus.duplicates
    assert all("\x00" not in note["text"][0] for note in notes.values())
    if corpus.check:
        corpus.check(notes, summary)

    written = _output_bytes(tmp_path / "out")
    assert len(written) >= 3
    leaks = [str(path.relative_to(tmp_path)) for path, data in written if CANARY.encode() in data]
    assert leaks == []
    captured = capfd.readouterr()
    assert CANARY not in caplog.text and CANARY not in captured.out and CANARY not in captured.err


def test_same_group_same_split_whatever_the_input_order(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": f"n{i}", "text": f"Note number {i} for review.", "patient": f"pt{i % 7}"})
        for i in range(28)
    ]
    placements = []
    pipelines_made = []

    def make_pipeline() -> beam.Pipeline:
        pipelines_made.append(True)
        return beam.Pipeline(argv=["--direct_num_workers=1"])

    context = executor.Executor.Context(make_beam_pipeline_fn=make_pipeline)
    for order, ordered in (("forward", lines), ("reversed", lines[::-1])):
        root = tmp_path / order
        root.mkdir()
        (root / "notes.jsonl").write_text("\n".join(ordered) + "\n")
        config = {"group_key": "patient"}
        run = run_executor(tmp_path / f"out-{order}", root, "jsonl", config, context, splits={"a": 1, "b": 1})
        placements.append(
            {
                note["note_id"][0]: (name, note["group_id"][0])
                for name, split in run.all_notes().items()
                for note in split
            }
        )
    assert placements[0] == placements[1] and len(placements[0]) == 28
    assert len(pipelines_made) == 2
    split_of_group = defaultdict(set)
    for name, group in placements[0].values():
        split_of_group[group].add(name)
    assert all(len(names) == 1 for names in split_of_group.values())
    assert {name for names in split_of_group.values() for name in names} == {"a", "b"}


def test_bad_parameters_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="splits"):
        run_executor(tmp_path, REPO / "data" / "sample", "jsonl", splits={"train": 0})
    with pytest.raises(ValueError, match="reader_config"):
        executor.IngestParams.from_exec_properties(
            {"input_base": "x", "input_format": "jsonl", "reader_config": "{not json"}
        )
    with pytest.raises(FileNotFoundError):
        run_executor(tmp_path, tmp_path / "absent", "jsonl")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.csv").write_text("id,text\n")
    with pytest.raises(FileNotFoundError, match=r"no \.jsonl"):
        run_executor(tmp_path, tmp_path / "empty", "jsonl")
