"""MIMIC-III notes labelled with their admission's ICD-9 codes (CAML's setting), on a synthetic
MIMIC-shaped fixture: label sets, CAML's dots, top-N codes, categories kept or counted as skipped."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.clinical_example_gen import mimic_codes, readers, records
from components.clinical_example_gen.records import NoteRecord, Reject, Skipped
from tests.components.clinical_example_gen.test_executor import run_executor

MAX = readers.DEFAULT_MAX_NOTE_BYTES
NOTE_HEADER = "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CATEGORY,DESCRIPTION,ISERROR,TEXT\n"
NOTES = [
    '1,10,100,2150-01-01,Discharge summary,Report,,"Synthetic summary one.\nStable."',
    "2,10,100,2150-01-01,Nursing,Generic,,Synthetic nursing note.",
    "3,11,101.0,2150-02-01,Discharge summary,Addendum,,Synthetic addendum.",
    "4,12,,2150-03-01,Discharge summary,Report,,Synthetic summary without admission.",
    "5,13,103,2150-04-01,Discharge summary,Report,,Synthetic summary of an uncoded admission.",
    "6,14,104,2150-05-01,Radiology,CT,1,Synthetic report marked as error.",
    "7,15,105,2150-06-01,Echo,Report,,Synthetic echo report.",
]
CODE_HEADER = "ROW_ID,SUBJECT_ID,HADM_ID,SEQ_NUM,ICD9_CODE\n"
DIAGNOSES = [
    "1,10,100,1,4019",
    "2,10,100,2,25000",
    "3,10,100,3,E8791",
    "4,10,100,4,V4501",
    "5,10,100,5,4019",
    "6,11,101,1,4019",
    "7,11,101,2,42731",
    "8,15,105,1,4019",
    "9,15,105,2,",
]
PROCEDURES = ["1,10,100,1,3893", "2,11,101,1,966"]
ALL_CODES_100 = ("250.00", "38.93", "401.9", "E879.1", "V45.01")


@pytest.fixture
def mimic(tmp_path: Path) -> dict[str, str]:
    """NOTEEVENTS.csv in its own folder, DIAGNOSES_ICD.csv and a gzipped PROCEDURES_ICD beside it."""
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "NOTEEVENTS.csv").write_text(NOTE_HEADER + "\n".join(NOTES) + "\n")
    (tmp_path / "DIAGNOSES_ICD.csv").write_text(CODE_HEADER + "\n".join(DIAGNOSES) + "\n")
    with gzip.open(tmp_path / "PROCEDURES_ICD.csv.gz", "wt") as out:
        out.write(CODE_HEADER + "\n".join(PROCEDURES) + "\n")
    return {
        "notes": str(tmp_path / "notes" / "NOTEEVENTS.csv"),
        "diagnoses_path": str(tmp_path / "DIAGNOSES_ICD.csv"),
        "procedures_path": str(tmp_path / "PROCEDURES_ICD.csv.gz"),
    }


def _read(paths: dict[str, str], **config) -> list[readers.ReadResult]:
    reader = readers.make_reader("mimic", config, MAX)
    return list(reader(paths["notes"], "NOTEEVENTS.csv"))


def _labels(got: list[readers.ReadResult]) -> dict[str, tuple[str, ...]]:
    return {item.note_id: item.labels for item in got if isinstance(item, NoteRecord)}


def _codes(paths: dict[str, str]) -> dict[str, str]:
    return {key: paths[key] for key in ("diagnoses_path", "procedures_path")}


def test_codes_are_dotted_as_caml_dots_them() -> None:
    assert mimic_codes.format_code("4019", procedure=False) == "401.9"
    assert mimic_codes.format_code("25000", procedure=False) == "250.00"
    assert mimic_codes.format_code("E8791", procedure=False) == "E879.1"
    assert mimic_codes.format_code("V4501", procedure=False) == "V45.01"
    assert mimic_codes.format_code("3893", procedure=True) == "38.93"
    assert mimic_codes.format_code(" 401 ", procedure=False) == "401"
    assert mimic_codes.format_code("401.9", procedure=False) == "401.9"
    assert mimic_codes.format_code("v4501", procedure=False, dots=False) == "V4501"


def test_notes_are_labelled_with_their_admissions_codes(mimic: dict[str, str]) -> None:
    got = _read(mimic, **_codes(mimic))

    assert _labels(got) == {
        "1": ALL_CODES_100,
        "2": ALL_CODES_100,
        # HADM_ID written as a float still finds its admission.
        "3": ("401.9", "427.31", "96.6"),
        "4": (),
        "5": (),
        "7": ("401.9",),
    }
    assert [(r.locator, r.reason) for r in got if isinstance(r, Reject)] == [
        ("NOTEEVENTS.csv:row 6 (ROW_ID=6)", records.MARKED_ERROR)
    ]
    (first,) = (item for item in got if isinstance(item, NoteRecord) and item.note_id == "1")
    assert first.group_id == "10" and first.note_type == "Discharge summary"
    assert first.metadata == {
        "note_type": "Discharge summary",
        "description": "Report",
        "source_format": "mimic",
    }


def test_categories_keep_discharge_summaries_and_count_the_rest(mimic: dict[str, str]) -> None:
    got = _read(mimic, **_codes(mimic), categories=["Discharge summary"])

    assert _labels(got) == {"1": ALL_CODES_100, "3": ("401.9", "427.31", "96.6"), "4": (), "5": ()}
    assert [item for item in got if isinstance(item, Skipped)] == [
        Skipped("NOTEEVENTS.csv", mimic_codes.OTHER_CATEGORY, 2)
    ]
    # Without code files, categories filter and the labels stay CATEGORY.
    assert set(_labels(_read(mimic, categories=["Echo", "Nursing"])).items()) == {
        ("2", ("Nursing",)),
        ("7", ("Echo",)),
    }


def test_top_codes_keep_the_most_frequent_ties_by_code(mimic: dict[str, str]) -> None:
    # 401.9 is on three admissions; every other code on one, so the tie goes to the smallest: 250.00.
    got = _read(mimic, **_codes(mimic), top_codes=2)
    assert _labels(got) == {
        "1": ("250.00", "401.9"),
        "2": ("250.00", "401.9"),
        "3": ("401.9",),
        "4": (),
        "5": (),
        "7": ("401.9",),
    }
    only_diagnoses = _read(mimic, diagnoses_path=mimic["diagnoses_path"], top_codes=1, code_dots=False)
    assert _labels(only_diagnoses)["1"] == ("4019",) and _labels(only_diagnoses)["3"] == ("4019",)


def test_without_dots_codes_are_as_mimic_stores_them(mimic: dict[str, str]) -> None:
    got = _read(mimic, **_codes(mimic), code_dots=False)
    assert _labels(got)["1"] == ("25000", "3893", "4019", "E8791", "V4501")


def test_code_files_are_read_once_per_reader(mimic: dict[str, str], monkeypatch) -> None:
    loads = []
    load = mimic_codes.admission_codes

    def counting(config: mimic_codes.MimicCodesConfig) -> dict[str, tuple[str, ...]]:
        loads.append(config)
        return load(config)

    monkeypatch.setattr(mimic_codes, "admission_codes", counting)
    reader = readers.make_reader("mimic", _codes(mimic), MAX)
    assert loads == []
    for _ in range(2):
        assert len(list(reader(mimic["notes"], "NOTEEVENTS.csv"))) == len(NOTES)
    assert len(loads) == 1


def test_plain_mimic_config_is_the_csv_reader_as_before(mimic: dict[str, str]) -> None:
    got = _read(mimic, group_column="HADM_ID")
    labels = _labels(got)
    assert labels["1"] == ("Discharge summary",) and labels["7"] == ("Echo",)
    assert {item.note_id: item.group_id for item in got if isinstance(item, NoteRecord)}["3"] == "101.0"


def _bad_configs(mimic: dict[str, str]) -> Iterator[tuple[dict, str]]:
    yield {"diagnoses_path": mimic["diagnoses_path"] + ".missing"}, "diagnoses_path does not exist"
    yield {"procedures_path": mimic["notes"]}, "procedures_path file has no column ICD9_CODE"
    yield {"diagnose_path": mimic["diagnoses_path"]}, r"unknown keys \['diagnose_path'\]"
    yield {"top_codes": 50}, "top_codes needs diagnoses_path or procedures_path"
    yield {**_codes(mimic), "top_codes": -1}, "top_codes must be an integer"
    yield {**_codes(mimic), "code_dots": "yes"}, "code_dots must be true or false"
    yield {"categories": "Discharge summary"}, "categories must be a list"
    yield {"diagnoses_path": ""}, "diagnoses_path must be a path"


def test_bad_settings_fail_when_the_reader_is_made(mimic: dict[str, str]) -> None:
    for config, message in _bad_configs(mimic):
        with pytest.raises(ValueError, match=message):
            readers.make_reader("mimic", config, MAX)


def test_the_executor_counts_other_categories_as_skipped(mimic: dict[str, str], tmp_path: Path) -> None:
    config = {**_codes(mimic), "categories": ["Discharge summary"], "top_codes": 3}
    run = run_executor(tmp_path / "out", Path(mimic["notes"]), "mimic", config)

    summary = run.summary
    assert summary["input_records"] == len(NOTES)
    assert summary["skipped_not_notes"] == 2 and summary["skipped_by_type"] == {"other category": 2}
    assert summary["rejected_by_reason"] == {records.MARKED_ERROR: 1}
    assert summary["kept_examples"] == 4
    notes = {note["note_id"][0]: note["labels"] for split in run.all_notes().values() for note in split}
    assert notes == {"1": ["250.00", "38.93", "401.9"], "3": ["401.9"], "4": [], "5": []}
