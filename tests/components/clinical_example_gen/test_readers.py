"""Each reader on small synthetic files: what it keeps, what it rejects, and how it names records."""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
from pathlib import Path

import pytest

from components.clinical_example_gen import readers, records
from components.clinical_example_gen.records import NoteRecord, Reject

MAX = 1000


def read(input_format: str, path: Path, config: dict | None = None, name: str | None = None, max_bytes=MAX):
    reader = readers.make_reader(input_format, config or {}, max_bytes)
    return list(reader(str(path), name or path.name))


def rejects(items) -> dict[str, str]:
    return {item.locator: item.reason for item in items if isinstance(item, Reject)}


def notes(items) -> list[NoteRecord]:
    return [item for item in items if isinstance(item, NoteRecord)]


CSV_CONFIG = {"id_column": "id", "text_column": "body", "label_column": "kind", "group_column": "patient"}


def test_csv_rows_become_notes_with_labels_groups_and_row_locators(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('id,patient,kind,body\n7,p1,Progress,"Line one.\nLine ""two""."\n8,,,Short note.\n')
    got = read("csv", path, CSV_CONFIG)
    assert [(n.note_id, n.group_id, n.labels, n.text) for n in got] == [
        ("7", "p1", ("Progress",), 'Line one.\nLine "two".'),
        ("8", "8", (), "Short note."),
    ]
    assert got[0].locator == "notes.csv:row 1 (id=7)"
    assert got[0].metadata == {"source_format": "csv"}


def test_csv_rejects_bad_rows_and_reads_on(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    body = b"id,patient,kind,body\n"
    body += b'1,p,k,"bad \xff byte"\n'  # row 1: invalid UTF-8
    body += b"2,p,k,text,extra\n"  # row 2: too many fields
    body += b'3,p,k,"   "\n'  # row 3: empty
    body += b",p,k,no id\n"  # row 4: missing id
    body += b"5,p,k," + b"x" * (MAX + 1) + b"\n"  # row 5: oversize, short enough to parse
    body += b"6,p,k," + b"y" * 100_000 + b"\n"  # row 6: oversize, beyond the record cap: never held
    body += b"7,p,k,nul\x00byte kept\n"  # row 7: fine, NUL dropped
    body += b'8,p,k,"unterminated\nat end of file'  # row 8: truncated
    path.write_bytes(body)
    got = read("csv", path, CSV_CONFIG)
    assert rejects(got) == {
        "bad.csv:row 1": records.UNREADABLE_ENCODING,
        "bad.csv:row 2": records.MALFORMED_CSV_ROW,
        "bad.csv:row 3 (id=3)": records.EMPTY_TEXT,
        "bad.csv:row 4": records.MISSING_FIELD,
        "bad.csv:row 5 (id=5)": records.OVERSIZE,
        "bad.csv:row 6": records.OVERSIZE,
        "bad.csv:row 8": records.MALFORMED_CSV_ROW,
    }
    assert [n.text for n in notes(got)] == ["nulbyte kept"]


def test_csv_fields_beyond_the_csv_module_default_limit_are_read(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    long_text = "word " * 40_000  # 200 kB, above csv's default 128 kB field limit
    path.write_text(f"id,body\n1,{long_text}\n")
    got = read("csv", path, {"id_column": "id", "text_column": "body"}, max_bytes=1 << 20)
    assert len(notes(got)) == 1 and len(notes(got)[0].text) == len(long_text)


def test_csv_missing_text_column_rejects_every_row(tmp_path: Path) -> None:
    path = tmp_path / "notext.csv"
    path.write_text("id,patient\n1,p1\n2,p2\n")
    got = read("csv", path, CSV_CONFIG)
    assert [(r.reason, r.detail) for r in got] == [(records.MISSING_COLUMN, "body, kind")] * 2


def test_mtsamples_preset_reads_the_shipped_sample() -> None:
    sample = Path(__file__).resolve().parents[3] / "data" / "sample" / "mtsamples_sample.csv"
    with sample.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    got = read(
        "csv", sample, dataclasses.asdict(readers.MTSAMPLES_CSV), max_bytes=readers.DEFAULT_MAX_NOTE_BYTES
    )
    assert len(got) == len(rows)
    assert [(n.note_id, n.labels[0], n.text) for n in got] == [
        (r["sample_id"], r["medical_specialty"].strip(), r["transcription"]) for r in rows
    ]
    assert all("description" not in n.metadata and "sample_name" not in n.metadata for n in got)


def test_mimic_groups_by_patient_rejects_marked_errors_and_drops_dates(tmp_path: Path) -> None:
    path = tmp_path / "NOTEEVENTS.csv"
    header = (
        "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT\n"
    )
    path.write_text(
        header
        + '11,101,5001,2150-01-01,,,Discharge summary,Report,,,"Admitted [**2150-1-1**].\nStable."\n'
        + '12,101,5001,2150-01-02,,,Nursing,Generic,17,1,"Entered in error."\n'
    )
    got = read("mimic", path)
    (note,) = notes(got)
    assert (note.note_id, note.group_id, note.labels) == ("11", "101", ("Discharge summary",))
    assert note.metadata == {
        "note_type": "Discharge summary",
        "description": "Report",
        "source_format": "mimic",
    }
    assert rejects(got) == {"NOTEEVENTS.csv:row 2 (ROW_ID=12)": records.MARKED_ERROR}


def test_mimic_matches_lowercase_headers_and_can_regroup(tmp_path: Path) -> None:
    path = tmp_path / "noteevents.csv"
    path.write_text(
        "row_id,subject_id,hadm_id,category,description,iserror,text\n1,9,77,Radiology,CT,,Fine.\n"
    )
    (note,) = read("mimic", path, {"group_column": "HADM_ID"})
    assert (note.note_id, note.group_id, note.note_type) == ("1", "77", "Radiology")


def test_text_dir_uses_relative_paths_groups_from_a_pattern_and_parent_labels(tmp_path: Path) -> None:
    (tmp_path / "pat-1" / "cardiology").mkdir(parents=True)
    (tmp_path / "pat-1" / "cardiology" / "a.txt").write_text("Echo normal.")
    (tmp_path / "pat-2").mkdir()
    (tmp_path / "pat-2" / "b.txt").write_bytes(b"\xef\xbb\xbfBOM first.")
    (tmp_path / "pat-2" / "c.txt").write_bytes(b"bad \xc3\x28 byte")
    (tmp_path / "pat-2" / "d.txt").write_bytes(b"z" * (MAX + 10))
    (tmp_path / "pat-2" / "notes.md").write_text("not a note")
    (tmp_path / "loose.txt").write_text("\n  \n")
    files = readers.list_input_files(str(tmp_path), "text_dir")
    assert [name for _, name in files] == [
        "loose.txt",
        "pat-1/cardiology/a.txt",
        "pat-2/b.txt",
        "pat-2/c.txt",
        "pat-2/d.txt",
    ]
    reader = readers.make_reader(
        "text_dir", {"group_pattern": r"^(?P<group>pat-\d+)/", "label_from_parent": True}, MAX
    )
    got = [item for path, name in files for item in reader(path, name)]
    assert [(n.note_id, n.group_id, n.labels, n.text) for n in notes(got)] == [
        ("pat-1/cardiology/a.txt", "pat-1", ("cardiology",), "Echo normal."),
        ("pat-2/b.txt", "pat-2", ("pat-2",), "BOM first."),
    ]
    assert rejects(got) == {
        "loose.txt": records.EMPTY_TEXT,
        "pat-2/c.txt": records.UNREADABLE_ENCODING,
        "pat-2/d.txt": records.OVERSIZE,
    }


def test_jsonl_keys_labels_and_line_locators(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    lines = [
        {"doc": 1, "body": "First.", "tags": ["b", "a"], "pid": "p1", "kind": "note"},
        {"doc": "2", "body": "Second.", "tags": "c"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    config = {
        "id_key": "doc",
        "text_key": "body",
        "labels_key": "tags",
        "group_key": "pid",
        "metadata_keys": {"note_type": "kind"},
    }
    got = read("jsonl", path, config)
    assert [(n.note_id, n.group_id, n.labels, n.note_type, n.locator) for n in got] == [
        ("1", "p1", ("b", "a"), "note", "notes.jsonl:line 1"),
        ("2", "2", ("c",), "", "notes.jsonl:line 2"),
    ]


def test_jsonl_rejects_bad_lines_and_reads_on(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        b'{"id": 1, "text": "bad \xff"}\n'
        b'{"id": 2, "text": "trailing comma",}\n'
        b'["not", "an", "object"]\n'
        b'{"text": "no id"}\n'
        b'{"id": 5, "text": null}\n'
        b'{"id": 6, "text": "' + b"x" * 100_000 + b'"}\n'
        b'{"id": 7, "text": "raw\x00nul and \\u0000 escaped"}\n'
        b'{"id": 8, "text": "truncated'
    )
    got = read("jsonl", path)
    assert rejects(got) == {
        "bad.jsonl:line 1": records.UNREADABLE_ENCODING,
        "bad.jsonl:line 2": records.MALFORMED_JSON,
        "bad.jsonl:line 3": records.MALFORMED_JSON,
        "bad.jsonl:line 4": records.MISSING_FIELD,
        "bad.jsonl:line 5": records.MISSING_FIELD,
        "bad.jsonl:line 6": records.OVERSIZE,
        "bad.jsonl:line 8": records.MALFORMED_JSON,
    }
    assert [n.note_id for n in notes(got)] == ["7"]


def test_ncbi_sample_reads_with_default_keys() -> None:
    sample = Path(__file__).resolve().parents[3] / "data" / "sample" / "ncbi_disease_sample.jsonl"
    expected = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line.strip()]
    got = read(
        "jsonl", sample, {"metadata_keys": {"split": "split"}}, max_bytes=readers.DEFAULT_MAX_NOTE_BYTES
    )
    assert [(n.note_id, n.text, n.metadata["split"]) for n in got] == [
        (e["id"], e["text"], e["split"]) for e in expected
    ]


def test_ncbi_sample_mentions_are_ordered_spans_of_the_text() -> None:
    # The token-classification labels: each annotated mention is a character span of `text`, none
    # overlaps the next, none starts or ends in whitespace, and every abstract's types are the corpus's.
    sample = Path(__file__).resolve().parents[3] / "data" / "sample" / "ncbi_disease_sample.jsonl"
    docs = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = {"SpecificDisease", "DiseaseClass", "CompositeMention", "Modifier"}
    assert sum(len(d["entities"]) for d in docs) > 500
    for doc in docs:
        previous_end = 0
        for entity in sorted(doc["entities"], key=lambda e: e["start"]):
            mention = doc["text"][entity["start"] : entity["end"]]
            assert entity["type"] in kinds and previous_end <= entity["start"] < entity["end"], doc["id"]
            assert mention == mention.strip() and mention, doc["id"]
            previous_end = entity["end"]


def _document(doc_id: str, data: bytes | None, content_type: str | None = "text/plain") -> dict:
    attachment = {} if content_type is None else {"contentType": content_type}
    if data is not None:
        attachment["data"] = base64.b64encode(data).decode("ascii")
    resource = {
        "resourceType": "DocumentReference",
        "id": doc_id,
        "status": "current",
        "subject": {"reference": f"Patient/{doc_id}-pt"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
        "content": [{"attachment": attachment}],
    }
    return resource


def test_fhir_bundle_and_single_document(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "pt"}},
            {
                "resource": _document(
                    "d1", "Fièvre résolue.".encode("latin-1"), "text/plain; charset=ISO-8859-1"
                )
            },
            {"resource": _document("d2", b"Plain UTF-8 \xe2\x9c\x93.", None)},
        ],
    }
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    single = _document("d3", b"Alone.")
    del single["subject"]
    (tmp_path / "single.json").write_text(json.dumps(single))
    files = readers.list_input_files(str(tmp_path), "fhir")
    reader = readers.make_reader("fhir", {}, MAX)
    items = [item for path, name in files for item in reader(path, name)]
    assert [item for item in items if isinstance(item, records.Skipped)] == [
        records.Skipped("bundle.json", "Patient", 1)
    ]
    got = notes(items)
    assert [(n.note_id, n.group_id, n.text, n.note_type, n.labels, n.locator) for n in got] == [
        (
            "d1",
            "Patient/d1-pt",
            "Fièvre résolue.",
            "Progress note",
            ("Progress note",),
            "bundle.json:entry 1",
        ),
        ("d2", "Patient/d2-pt", "Plain UTF-8 ✓.", "Progress note", ("Progress note",), "bundle.json:entry 2"),
        ("d3", "d3", "Alone.", "Progress note", ("Progress note",), "single.json"),
    ]
    assert got[0].metadata == {
        "note_type": "Progress note",
        "type_code": "11506-3",
        "source_format": "fhir",
        "resource_type": "DocumentReference",
    }


def test_fhir_rejects_name_the_problem_not_the_text(tmp_path: Path) -> None:
    secret = "SECRET-CANARY-TEXT"
    invalid = _document("d2", secret.encode())
    del invalid["status"]
    by_url = _document("d3", None)
    by_url["content"] = [{"attachment": {"contentType": "text/plain", "url": "https://example.org/n"}}]
    lines = [
        json.dumps(_document("d1", b"Fine.")),
        json.dumps(invalid),
        json.dumps(by_url),
        json.dumps(_document("d4", secret.encode(), "application/pdf")),
        json.dumps(_document("d5", b"bad \xff " + secret.encode())),
        json.dumps(_document("d6", b"x" * (10 * MAX))),
        json.dumps(_document("d7", b"Not closed")) + '{"resourceType": "DocumentReference", "id": "d8"',
        '{"resourceType": "Bundle", "entry": [{"resource": '
        + json.dumps(_document("d9", b"In bundle."))
        + "}]}",
        '{"id": "no type"}',
        json.dumps({"resourceType": "DocumentReference", "id": "d10", "status": "current", "content": "bad"}),
        json.dumps({**_document("d11", b"Odd."), "contained": [{"resourceType": "NotAType"}]}),
        json.dumps({"resourceType": "Bundle", "entry": {"resource": _document("d12", b"Odd.")}}),
        json.dumps(_document("d13", secret.encode()))[:-30],
    ]
    path = tmp_path / "docs.ndjson"
    path.write_text("\n".join(lines))
    got = read("fhir", path)
    assert [n.note_id for n in notes(got)] == ["d1", "d9"]
    assert notes(got)[1].locator == "docs.ndjson:line 8 entry 0"
    assert rejects(got) == {
        "docs.ndjson:line 2": records.INVALID_FHIR_RESOURCE,
        "docs.ndjson:line 3": records.ATTACHMENT_BY_URL,
        "docs.ndjson:line 4": records.UNSUPPORTED_ATTACHMENT,
        "docs.ndjson:line 5": records.UNREADABLE_ENCODING,
        "docs.ndjson:line 6": records.OVERSIZE,
        "docs.ndjson:line 7": records.MALFORMED_JSON,
        "docs.ndjson:line 9": records.INVALID_FHIR_RESOURCE,
        "docs.ndjson:line 10": records.INVALID_FHIR_RESOURCE,
        "docs.ndjson:line 11": records.INVALID_FHIR_RESOURCE,
        "docs.ndjson:line 12": records.INVALID_FHIR_RESOURCE,
        "docs.ndjson:line 13": records.MALFORMED_JSON,
    }
    details = {item.locator: item.detail for item in got if isinstance(item, Reject)}
    assert details["docs.ndjson:line 2"].startswith("status (")
    assert details["docs.ndjson:line 4"] == "application/pdf"
    assert all(secret not in json.dumps(item.to_json()) for item in got if isinstance(item, Reject))


def test_fhir_narrative_fallback_is_opt_in(tmp_path: Path) -> None:
    doc = _document("d1", None)
    doc["content"] = [{"attachment": {"contentType": "text/plain", "url": "https://example.org/n"}}]
    doc["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Seen &amp; well.</p></div>',
    }
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    assert rejects(read("fhir", path)) == {"doc.json": records.ATTACHMENT_BY_URL}
    (note,) = read("fhir", path, {"narrative_fallback": True})
    assert note.text == "Seen & well."


def test_make_reader_and_listing_refuse_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="input_format"):
        readers.make_reader("xml", {}, MAX)
    with pytest.raises(ValueError, match="unknown keys"):
        readers.make_reader("jsonl", {"txt_key": "body"}, MAX)
    with pytest.raises(ValueError, match="id_column"):
        readers.make_reader("csv", {"text_column": "body"}, MAX)
    with pytest.raises(ValueError, match="max_note_bytes"):
        readers.make_reader("jsonl", {}, 0)
    with pytest.raises(FileNotFoundError):
        readers.list_input_files(str(tmp_path / "absent"), "csv")


def test_jsonl_spans_are_read_in_order_and_bad_ones_rejected_with_where(tmp_path: Path) -> None:
    text = "Lynch syndrome and breast cancer."
    lines = [
        {
            "id": "1",
            "text": text,
            "entities": [{"start": 19, "end": 32, "type": "D"}, {"start": 0, "end": 14, "type": "D"}],
        },
        {"id": "2", "text": text, "entities": []},
        {"id": "3", "text": text},
        {"id": "4", "text": text, "entities": [{"start": 30, "end": 99, "type": "D"}]},
        {
            "id": "5",
            "text": text,
            "entities": [{"start": 0, "end": 14, "type": "D"}, {"start": 6, "end": 9, "type": "D"}],
        },
        {"id": "6", "text": text, "entities": [{"start": "0", "end": 5, "type": "D"}]},
        {"id": "7", "text": text, "entities": [{"start": 0, "end": 5, "type": " "}]},
    ]
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    got = read("jsonl", path, {"spans_key": "entities"})
    kept = {n.note_id: n.spans for n in notes(got)}
    assert kept == {"1": (records.Span(0, 14, "D"), records.Span(19, 32, "D")), "2": ()}
    details = {r.locator: (r.reason, r.detail) for r in got if isinstance(r, Reject)}
    assert details == {
        "notes.jsonl:line 3": (records.MISSING_FIELD, "entities"),
        "notes.jsonl:line 4": (
            records.BAD_SPANS,
            "entities[0]: 30-99 is not a non-empty span of a 33-character text",
        ),
        "notes.jsonl:line 5": (records.BAD_SPANS, "entities: spans 0-14 and 6-9 overlap"),
        "notes.jsonl:line 6": (records.BAD_SPANS, "entities[0]: start and end must be integers"),
        "notes.jsonl:line 7": (records.BAD_SPANS, "entities[0]: type must be a non-empty string"),
    }
    assert all(n.spans is None for n in notes(read("jsonl", path)))  # not asked for: not read


def test_ncbi_sample_mentions_come_through_the_text_steps_as_spans_of_the_processed_text() -> None:
    import unicodedata

    from components.clinical_example_gen import examples, text_steps

    sample = Path(__file__).resolve().parents[3] / "data" / "sample" / "ncbi_disease_sample.jsonl"
    source = {d["id"]: d for d in map(json.loads, sample.read_text(encoding="utf-8").splitlines())}
    got = read("jsonl", sample, {"spans_key": "entities"}, max_bytes=readers.DEFAULT_MAX_NOTE_BYTES)
    steps = text_steps.TextSteps()
    processed = [steps(record) for record in notes(got)]
    assert len(processed) == len(source) and all(isinstance(p, records.ProcessedNote) for p in processed)
    for note in processed:
        mentions = [
            source[note.note_id]["text"][e["start"] : e["end"]] for e in source[note.note_id]["entities"]
        ]
        got_mentions = [note.text[s.start : s.end] for s in note.spans]
        normalized = [" ".join(unicodedata.normalize("NFKC", m).split()) for m in mentions]
        assert got_mentions == normalized, note.note_id  # all 1,011 mentions, each unchanged
        example = examples.to_example(note).features.feature
        encoded = note.text.encode("utf-8")
        starts, ends = (
            example[examples.SPAN_STARTS].int64_list.value,
            example[examples.SPAN_ENDS].int64_list.value,
        )
        assert [encoded[a:b].decode("utf-8") for a, b in zip(starts, ends, strict=True)] == got_mentions
