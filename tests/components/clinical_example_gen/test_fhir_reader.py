"""The FHIR reader on the shapes real exports take: one patient named four ways, entries identified by
fullUrl alone, gzipped files, DiagnosticReport and contained notes, top-level arrays, labels from codings;
and the ingest report's accounting of every resource, on the bundled FHIR sample. Fixtures are built
here from those shapes; the note texts are made up or the bundled MTSamples sample's."""

from __future__ import annotations

import argparse
import base64
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from components.clinical_example_gen import readers, records
from components.clinical_example_gen.fhir_reader import FhirConfig
from components.clinical_example_gen.records import NoteRecord, Reject, Skipped
from tests.components.clinical_example_gen.test_executor import run_executor

REPO = Path(__file__).resolve().parents[3]
FHIR_SAMPLE = REPO / "data" / "sample" / "fhir"
MAX = 1 << 20
PATIENT = "7d3b1f0c-5a2e-4c8b-9e61-0f2a4b6c8d1e"


def _doc(text: str, subject: dict | None, doc_id: str | None = None, **fields) -> dict:
    resource = {"resourceType": "DocumentReference", "status": "current"}
    if doc_id:
        resource["id"] = doc_id
    if subject is not None:
        resource["subject"] = subject
    resource["content"] = [
        {"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}
    ]
    resource.update(fields)
    return resource


def _read_folder(folder: Path, config: dict | None = None) -> list:
    reader = readers.make_reader("fhir", config or {}, MAX)
    return [
        item for path, name in readers.list_input_files(str(folder), "fhir") for item in reader(path, name)
    ]


def _notes(items: list) -> list[NoteRecord]:
    return [item for item in items if isinstance(item, NoteRecord)]


def _write_one_patient_four_ways(folder: Path) -> None:
    """The same patient as `Patient/X` (bulk NDJSON, gzipped), `urn:uuid:X` and by identifier only (a
    transaction Bundle whose Patient entry has no id), and an absolute versioned URL (a searchset)."""
    folder.mkdir()
    ndjson = json.dumps(_doc("Bulk export note.", {"reference": f"Patient/{PATIENT}"}, "bulk-1")) + "\n"
    (folder / "DocumentReference.ndjson.gz").write_bytes(gzip.compress(ndjson.encode()))
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{PATIENT}",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:mrn", "value": "A-1"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:11111111-2222-4333-8444-555555555555",
                "resource": _doc("Transaction note.", {"reference": f"urn:uuid:{PATIENT}"}),
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:66666666-7777-4888-9999-000000000000",
                "resource": _doc(
                    "Identified by MRN only.", {"identifier": {"system": "urn:mrn", "value": "A-1"}}
                ),
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }
    (folder / "transaction.json").write_text(json.dumps(transaction))
    searchset = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "fullUrl": "https://fhir.example.org/r4/DocumentReference/found-1",
                "resource": _doc(
                    "Search result note.",
                    {"reference": f"https://fhir.example.org/r4/Patient/{PATIENT}/_history/3"},
                    "found-1",
                ),
                "search": {"mode": "match"},
            }
        ],
    }
    (folder / "search.json.gz").write_bytes(gzip.compress(json.dumps(searchset).encode()))


def test_one_patient_in_four_reference_shapes_is_one_group_in_one_split(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    _write_one_patient_four_ways(folder)
    got = _read_folder(folder)
    assert {(note.note_id, note.group_id) for note in _notes(got)} == {
        ("bulk-1", f"Patient/{PATIENT}"),
        ("11111111-2222-4333-8444-555555555555", f"Patient/{PATIENT}"),
        ("66666666-7777-4888-9999-000000000000", f"Patient/{PATIENT}"),
        ("found-1", f"Patient/{PATIENT}"),
    }
    assert not [item for item in got if isinstance(item, Reject)]

    run = run_executor(tmp_path / "out", folder, "fhir")
    splits = {name: notes for name, notes in run.all_notes().items() if notes}
    assert len(splits) == 1
    ((_split, notes),) = splits.items()
    assert len(notes) == 4 and {note["group_id"][0] for note in notes} == {f"Patient/{PATIENT}"}
    summary = run.summary
    assert summary["skipped_by_type"] == {"Patient": 1}
    assert summary["input_records"] == 5 and summary["kept_examples"] == 4


def test_a_subject_by_identifier_alone_keys_on_a_hash_that_does_not_show_the_identifier(
    tmp_path: Path,
) -> None:
    subject = {"identifier": {"system": "urn:mrn", "value": "MRN-998877"}}
    lines = [
        _doc("First.", subject, "a"),
        _doc("Second.", subject, "b"),
        _doc("Other.", {"identifier": {"value": "X"}}, "c"),
    ]
    path = tmp_path / "docs.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    first, second, other = _notes(_read_folder(path))
    assert first.group_id == second.group_id != other.group_id
    assert first.group_id.startswith("identifier:") and "998877" not in first.group_id


def test_gzipped_files_read_like_their_plain_forms(tmp_path: Path) -> None:
    plain, zipped = tmp_path / "plain", tmp_path / "zipped"
    plain.mkdir()
    zipped.mkdir()
    ndjson = "".join(json.dumps(_doc(f"Note {i}.", None, f"n{i}")) + "\n" for i in range(3))
    bundle = json.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _doc("B.", None, "b")}]}
    )
    (plain / "docs.ndjson").write_text(ndjson)
    (plain / "bundle.json").write_text(bundle)
    (zipped / "docs.ndjson.gz").write_bytes(gzip.compress(ndjson.encode()))
    (zipped / "bundle.json.gz").write_bytes(gzip.compress(bundle.encode()))
    assert [name for _, name in readers.list_input_files(str(zipped), "fhir")] == [
        "bundle.json.gz",
        "docs.ndjson.gz",
    ]

    def key(items: list) -> list[tuple[str, str, str]]:
        return [(n.note_id, n.text, n.locator.split(":", 1)[1]) for n in _notes(items)]

    assert key(_read_folder(plain)) == key(_read_folder(zipped))
    assert len(_notes(_read_folder(zipped / "docs.ndjson.gz"))) == 3
    # A .json.gz past the cap after inflating is one oversize reject, not a memory blow-up.
    big = json.dumps(_doc("x" * 5000, None, "big")).encode()
    (tmp_path / "big.json.gz").write_bytes(gzip.compress(big))
    reader = readers.make_reader("fhir", {}, 50)
    assert [(r.locator, r.reason) for r in reader(str(tmp_path / "big.json.gz"), "big.json.gz")] == [
        ("big.json.gz", records.OVERSIZE)
    ]


def test_reports_contained_documents_and_arrays_are_notes_and_every_resource_is_accounted(
    tmp_path: Path,
) -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4", "display": "Imaging report"}]},
        "subject": {"reference": "Patient/p1"},
        "presentedForm": [
            {"contentType": "text/plain", "data": base64.b64encode(b"Impression: clear.").decode()}
        ],
    }
    structured = {
        "resourceType": "DiagnosticReport",
        "id": "r2",
        "status": "final",
        "code": {"text": "Panel"},
    }
    pdf_report = {
        **report,
        "id": "r3",
        "presentedForm": [{"contentType": "application/pdf", "data": "JVBERi0="}],
    }
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p2"},
        "contained": [_doc("Visit note.", None, "note"), {"resourceType": "Practitioner", "id": "dr"}],
    }
    array = [
        encounter,
        _doc("Loose note.", {"reference": "Patient/p3"}, "loose"),
        {"resourceType": "Observation"},
    ]
    (tmp_path / "array.json").write_text(json.dumps(array))
    (tmp_path / "reports.ndjson").write_text(
        "".join(json.dumps(r) + "\n" for r in (report, structured, pdf_report))
    )
    got = _read_folder(tmp_path)
    notes = {note.locator: note for note in _notes(got)}
    assert sorted(notes) == ["array.json:item 0 contained 0", "array.json:item 1", "reports.ndjson:line 1"]
    contained = notes["array.json:item 0 contained 0"]
    assert (contained.note_id, contained.group_id, contained.text) == ("e1#note", "Patient/p2", "Visit note.")
    assert notes["reports.ndjson:line 1"].labels == ("Imaging report",)
    assert notes["reports.ndjson:line 1"].metadata["resource_type"] == "DiagnosticReport"
    assert [(r.locator, r.reason, r.record_type) for r in got if isinstance(r, Reject)] == [
        ("reports.ndjson:line 3", records.UNSUPPORTED_ATTACHMENT, "DiagnosticReport")
    ]
    skipped = Counter({(s.locator, s.record_type): s.count for s in got if isinstance(s, Skipped)})
    assert skipped == {
        ("array.json", "Encounter"): 1,
        ("array.json", "Observation"): 1,
        ("reports.ndjson", "DiagnosticReport"): 1,
    }
    assert _notes(_read_folder(tmp_path, {"diagnostic_reports": False})) == [
        n for n in _notes(got) if n.metadata["resource_type"] != "DiagnosticReport"
    ]


def test_labels_come_from_type_or_category_of_a_chosen_system_and_field(tmp_path: Path) -> None:
    doc = _doc(
        "Labelled.",
        None,
        "d1",
        type={
            "coding": [
                {"system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"},
                {"system": "urn:local", "code": "DS"},
            ]
        },
        category=[{"coding": [{"system": "urn:cat", "code": "clinical-note", "display": "Clinical Note"}]}],
    )
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))

    def labels(config: dict) -> tuple[str, ...]:
        (note,) = _notes(_read_folder(path, config))
        return note.labels

    assert labels({}) == ("Discharge summary", "DS")
    assert labels({"label_system": "http://loinc.org", "label_field": "code"}) == ("18842-5",)
    assert labels({"label_path": "category"}) == ("Clinical Note",)
    assert labels({"label_path": ""}) == ()
    with pytest.raises(ValueError, match="label_path"):
        FhirConfig.from_dict({"label_path": "code"})


def test_the_bundled_fhir_export_is_accounted_per_file_and_type_and_keeps_patients_whole(
    tmp_path: Path,
) -> None:
    items = _read_folder(FHIR_SAMPLE)
    texts = {note.text for note in _notes(items)}
    run = run_executor(tmp_path, FHIR_SAMPLE, "fhir")
    summary = run.summary
    assert summary["rejected"] == 0
    assert summary["kept_examples"] == len(texts)
    assert summary["duplicates_collapsed"] == len(_notes(items)) - len(texts) > 0
    assert summary["input_records"] == (
        summary["kept_examples"]
        + summary["duplicates_collapsed"]
        + summary["rejected"]
        + summary["skipped_not_notes"]
    )
    by_type = summary["records_by_type"]
    assert by_type["Patient"] == {"notes": 0, "rejected": 0, "skipped": 80}
    assert by_type["DiagnosticReport"]["notes"] > 0 and by_type["DiagnosticReport"]["skipped"] > 0
    assert sum(sum(outcomes.values()) for outcomes in by_type.values()) == summary["input_records"]
    files = [json.loads(line) for line in (Path(run.report.uri) / "files.jsonl").read_text().splitlines()]
    assert sorted(line["file"] for line in files) == sorted(p.name for p in FHIR_SAMPLE.iterdir())
    assert all(line["records"] == line["notes"] + line["rejected"] + line["skipped"] for line in files)
    assert sum(line["records"] for line in files) == summary["input_records"]
    split_of: dict[str, set[str]] = {}
    for split, notes in run.all_notes().items():
        for note in notes:
            split_of.setdefault(note["group_id"][0], set()).add(split)
    assert all(len(splits) == 1 for splits in split_of.values())
    assert all(group.startswith("Patient/") for group in split_of)


def test_the_readme_fhir_command_gets_the_fhir_readers_defaults() -> None:
    from pipeline_runner import build_config

    args = argparse.Namespace(
        tiny=True,
        config=None,
        output_dir=None,
        corpus=str(FHIR_SAMPLE),
        corpus_format="fhir",
        preset=None,
        pretrain_steps=None,
        finetune_steps=None,
        min_accuracy=None,
        beam_arg=[],
        set=[],
    )
    config = build_config(args)
    assert config.reader_settings == {}
    readers.make_reader(config.corpus_format, config.reader_settings, config.max_note_bytes)
    assert config.replace(corpus_format="csv").reader_settings["text_column"] == "transcription"
    assert config.replace(corpus_format="jsonl", reader_config={"text_key": "body"}).reader_settings == {
        "text_key": "body"
    }
