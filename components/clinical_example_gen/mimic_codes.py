"""MIMIC-III notes labelled with their admission's ICD-9 codes: the ICD coding setting of CAML
(Mullenbach et al. 2018, "Explainable Prediction of Medical Codes from Clinical Text").

`readers.make_reader("mimic", config)` builds its reader here. The config takes the `CsvConfig` keys
(on top of `readers.MIMIC_NOTEEVENTS`) and these:
- `diagnoses_path`, `procedures_path`: DIAGNOSES_ICD.csv[.gz] and PROCEDURES_ICD.csv[.gz]. Given either,
  a note's labels are the codes of its admission (HADM_ID) in them; a note without HADM_ID, or whose
  admission has no codes, is kept with no labels. Given neither, labels stay CATEGORY.
- `categories`: the CATEGORY values to keep (CAML: ["Discharge summary"]); other notes are counted as
  skipped ("other category"). Records rejected while being read (marked errors, oversize) stay
  rejects whatever their category, since their category is not read.
- `top_codes`: keep only the N most frequent codes (0: all). A code's frequency is the number of
  admissions carrying it in the code files, ties going to the smaller code. CAML counted over the
  admissions that have a discharge summary only, so its top-50 can differ at the margin.
- `code_dots` (default true): CAML's formatting. MIMIC stores codes without dots; diagnoses get one
  after 3 characters (4 for E codes, so V codes after 3), procedures after 2, and no code of one kind
  reads like a code of the other. Without dots a diagnosis and a procedure code can coincide and
  become one label.

CAML also joined an admission's discharge summaries (report and addenda) into one document; here each
note stays one example, carrying its admission's codes. The code files are checked (present, with
HADM_ID and ICD9_CODE columns) when the reader is made and read once per reader, with the csv module,
at its first file: a reader pickled to Beam workers ships paths, not tables (DIAGNOSES_ICD has some
650k rows). Keep them out of input_base: the mimic format reads every .csv there as NOTEEVENTS.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

from tfx.dsl.io import fileio

from components.clinical_example_gen import readers
from components.clinical_example_gen.lines import open_binary, physical_lines
from components.clinical_example_gen.records import NoteRecord, Skipped

ADMISSION_COLUMN = "HADM_ID"
CATEGORY_COLUMN = "CATEGORY"
CODE_COLUMN = "ICD9_CODE"
#: The `record_type` of the notes that `categories` leaves out.
OTHER_CATEGORY = "other category"

#: Metadata keys that carry HADM_ID and CATEGORY from the CSV reader to here; removed before notes
#: leave the reader.
_ADMISSION_KEY = "_hadm_id"
_CATEGORY_KEY = "_category"
#: Where the dot goes: diagnoses after 3 characters (E codes after 4), procedures after 2.
_DIAGNOSIS_DOT, _E_CODE_DOT, _PROCEDURE_DOT = 3, 4, 2
#: "123.0", as an id column read as floats and written back shows an integer id.
_FLOAT_ID = re.compile(r"(\d+)\.0*")
_CODE_LINE_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class MimicCodesConfig:
    """The reader config keys that the NOTEEVENTS `CsvConfig` does not have (see the module docstring)."""

    diagnoses_path: str | None = None
    procedures_path: str | None = None
    #: CATEGORY values to keep; empty: every note.
    categories: tuple[str, ...] = ()
    #: Keep the N most frequent codes; 0: all.
    top_codes: int = 0
    code_dots: bool = True

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> MimicCodesConfig:
        """Validates the keys' types; raises ValueError naming the key."""
        for key in ("diagnoses_path", "procedures_path"):
            if config.get(key) is not None and not (isinstance(config[key], str) and config[key].strip()):
                raise ValueError(f"mimic reader config: {key} must be a path, got {config[key]!r}")
        categories = config.get("categories") or []
        if not isinstance(categories, list | tuple) or not all(
            isinstance(category, str) and category.strip() for category in categories
        ):
            raise ValueError(f"mimic reader config: categories must be a list of strings, got {categories!r}")
        top_codes = config.get("top_codes", 0)
        if not isinstance(top_codes, int) or isinstance(top_codes, bool) or top_codes < 0:
            raise ValueError(f"mimic reader config: top_codes must be an integer >= 0, got {top_codes!r}")
        code_dots = config.get("code_dots", True)
        if not isinstance(code_dots, bool):
            raise ValueError(f"mimic reader config: code_dots must be true or false, got {code_dots!r}")
        made = cls(
            diagnoses_path=config.get("diagnoses_path"),
            procedures_path=config.get("procedures_path"),
            categories=tuple(category.strip() for category in categories),
            top_codes=top_codes,
            code_dots=code_dots,
        )
        if made.top_codes and not made.code_files:
            raise ValueError("mimic reader config: top_codes needs diagnoses_path or procedures_path")
        return made

    @property
    def code_files(self) -> dict[str, str]:
        """Config key -> path of the code files given."""
        paths = {"diagnoses_path": self.diagnoses_path, "procedures_path": self.procedures_path}
        return {key: path for key, path in paths.items() if path}


def format_code(code: str, procedure: bool, dots: bool = True) -> str:
    """A MIMIC ICD-9 code as a label: stripped of dots, upper case, and dotted as CAML dots it."""
    code = code.strip().replace(".", "").upper()
    if not dots:
        return code
    at = _PROCEDURE_DOT if procedure else _E_CODE_DOT if code.startswith("E") else _DIAGNOSIS_DOT
    return f"{code[:at]}.{code[at:]}" if len(code) > at else code


def _admission_id(value: str) -> str:
    value = value.strip()
    match = _FLOAT_ID.fullmatch(value)
    return match.group(1) if match else value


def _code_rows(key: str, path: str) -> Iterator[tuple[str, str]]:
    """(HADM_ID, ICD9_CODE) of each row of a code file; raises ValueError naming `key` if the file
    lacks either column."""
    with open_binary(path) as stream:
        # Code files are ASCII with one record per line: no line longer than the cap is a code row.
        lines = physical_lines(stream, keep=_CODE_LINE_BYTES)
        rows = csv.reader(line.data.decode("utf-8-sig", errors="replace") for line in lines if line.data)
        header = [column.strip().upper() for column in next(rows, [])]
        missing = [column for column in (ADMISSION_COLUMN, CODE_COLUMN) if column not in header]
        if missing:
            raise ValueError(f"mimic reader config: the {key} file has no column {', '.join(missing)}")
        admission, code = header.index(ADMISSION_COLUMN), header.index(CODE_COLUMN)
        for row in rows:
            if len(row) == len(header) and row[admission].strip() and row[code].strip():
                yield _admission_id(row[admission]), row[code]


def check_code_files(config: MimicCodesConfig) -> None:
    """Raises ValueError naming the key of a code file that is missing or lacks a needed column."""
    for key, path in config.code_files.items():
        if not fileio.exists(path):
            raise ValueError(f"mimic reader config: {key} does not exist: {path}")
        with contextlib.closing(_code_rows(key, path)) as rows:
            next(rows, None)


def admission_codes(config: MimicCodesConfig) -> dict[str, tuple[str, ...]]:
    """HADM_ID -> its sorted labels: the codes of both files, formatted, cut to the `top_codes`."""
    codes: dict[str, set[str]] = collections.defaultdict(set)
    for key, path in config.code_files.items():
        procedure = key == "procedures_path"
        for admission, code in _code_rows(key, path):
            codes[admission].add(format_code(code, procedure, config.code_dots))
    if config.top_codes:
        frequency = collections.Counter(code for labels in codes.values() for code in labels)
        ranked = sorted(frequency, key=lambda code: (-frequency[code], code))
        kept = set(ranked[: config.top_codes])
        codes = {admission: labels & kept for admission, labels in codes.items()}
    return {admission: tuple(sorted(labels)) for admission, labels in codes.items() if labels}


class MimicCodesReader:
    """Reads NOTEEVENTS with the CSV reader, keeps the configured categories and, given code files,
    labels each note with its admission's codes (loaded at the first call, then kept)."""

    def __init__(self, csv_config: readers.CsvConfig, config: MimicCodesConfig, max_note_bytes: int) -> None:
        extra = {}
        if config.code_files:
            extra[_ADMISSION_KEY] = ADMISSION_COLUMN
        if config.categories:
            extra[_CATEGORY_KEY] = CATEGORY_COLUMN
        metadata_columns = {**csv_config.metadata_columns, **extra}
        self._csv_config = dataclasses.replace(csv_config, metadata_columns=metadata_columns)
        self._config = config
        self._max_note_bytes = max_note_bytes
        self._codes: dict[str, tuple[str, ...]] | None = None

    def __call__(self, path: str, name: str) -> Iterator[readers.ReadResult]:
        if self._config.code_files and self._codes is None:
            self._codes = admission_codes(self._config)
        other = 0
        for item in readers.read_csv(path, name, self._csv_config, self._max_note_bytes):
            if not isinstance(item, NoteRecord):
                yield item
                continue
            metadata = dict(item.metadata)
            admission = _admission_id(metadata.pop(_ADMISSION_KEY, ""))
            category = metadata.pop(_CATEGORY_KEY, "")
            if self._config.categories and category not in self._config.categories:
                other += 1
                continue
            labels = item.labels if self._codes is None else self._codes.get(admission, ())
            yield dataclasses.replace(item, labels=labels, metadata=metadata)
        if other:
            yield Skipped(name, OTHER_CATEGORY, other)


def make_reader(reader_config: Mapping[str, Any], max_note_bytes: int) -> readers.Reader:
    """The mimic format's reader: the NOTEEVENTS CSV reader as today unless `reader_config` names code
    files or categories. Raises ValueError on an unknown key, a bad value or a missing code file."""
    code_keys = {field.name for field in dataclasses.fields(MimicCodesConfig)}
    unknown = set(reader_config) - code_keys - {field.name for field in dataclasses.fields(readers.CsvConfig)}
    if unknown:
        raise ValueError(f"mimic reader config: unknown keys {sorted(unknown)}")
    config = MimicCodesConfig.from_dict({k: v for k, v in reader_config.items() if k in code_keys})
    csv_part = {k: v for k, v in reader_config.items() if k not in code_keys}
    csv_config = readers.CsvConfig.from_dict(csv_part, base=readers.MIMIC_NOTEEVENTS)
    if not config.code_files and not config.categories:
        return functools.partial(readers.read_csv, config=csv_config, max_note_bytes=max_note_bytes)
    check_code_files(config)
    return MimicCodesReader(csv_config, config, max_note_bytes)
