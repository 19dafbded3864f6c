"""One reader per input format, each turning a file into a stream of `NoteRecord`s, `Reject`s and
`Skipped` counts (records of a kind that holds no note, such as FHIR Patient resources).

A reader is a generator over one file: it never holds more than one record (see `lines.py` for the cap
on a single line), never raises on bad data (a bad record becomes a `Reject` and the next record is
read), and never puts note text anywhere but `NoteRecord.text`. `make_reader` builds the reader for a
format from its JSON configuration; `list_input_files` finds the files it applies to.

Choices made here, and why:
- Size: a note whose text is longer than `max_note_bytes` (UTF-8) is rejected as oversize. Lines or
  CSV records longer than a multiple of it (the worst-case escaping overhead of the format) are
  rejected without being held in memory; shorter ones are parsed and their text measured exactly.
- A configured CSV column missing from the header rejects every row of that file as "missing column"
  (detail: the column names) instead of failing the run: the rows are still counted, the report shows
  the problem, and other files in the same input are ingested.
- NUL bytes are dropped from CSV records before parsing, because Python 3.10's csv module refuses
  them; normalization drops them everywhere else. A record left empty is rejected as empty text.
- Text pairs (a question and its passage): with `CsvConfig.text_b_column` or `JsonlConfig.text_b_key`
  set, every record is a pair, and a pair missing its second text (absent, null, not a string, or
  blank) is rejected as "missing field" (detail: the column or key). Both texts together count toward
  `max_note_bytes`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import itertools
import json
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tfx.dsl.io import fileio

from components.clinical_example_gen import conll_reader, fhir_reader, i2b2_reader, records
from components.clinical_example_gen.fhir_reader import FhirConfig, read_fhir
from components.clinical_example_gen.lines import Line, open_binary, physical_lines
from components.clinical_example_gen.records import NoteRecord, Reject, Skipped

ReadResult = NoteRecord | Reject | Skipped
Reader = Callable[[str, str], Iterator[ReadResult]]

INPUT_FORMATS = ("csv", "mimic", "text_dir", "jsonl", "fhir", "i2b2", "conll")
FILE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".csv.gz"),
    "mimic": (".csv", ".csv.gz"),
    "text_dir": (".txt",),
    "jsonl": (".jsonl", ".jsonl.gz"),
    "fhir": fhir_reader.FILE_SUFFIXES,
    "i2b2": (".xml",),
    "conll": conll_reader.FILE_SUFFIXES,
}

#: 1 MiB of UTF-8: some thirty times the longest MTSamples note (29 kB), so only broken records (a
#: binary blob, a concatenated export) hit it, while one such record cannot exhaust a worker.
DEFAULT_MAX_NOTE_BYTES = 1 << 20

#: Bytes of a record beyond its note text (ids, labels, other columns) allowed before the size check.
_RECORD_SLACK = 64 * 1024
#: Quoting can double a CSV field's length (every `"` becomes `""`).
_CSV_ESCAPE_FACTOR = 2
#: JSON escaping can make one character six bytes (`\u0001`).
_JSON_ESCAPE_FACTOR = 6
#: Longest id value shown in a CSV locator; ids are short, and a misconfigured id column must not
#: copy a note into the report.
_LOCATOR_ID_CHARS = 40


@dataclasses.dataclass(frozen=True)
class CsvConfig:
    """Which CSV columns hold what. Header names match exactly, else case-insensitively."""

    id_column: str
    text_column: str
    label_column: str | None = None
    #: Defaults to the id column: each note its own group.
    group_column: str | None = None
    #: Metadata key -> column. Categorical columns only: never a free-text column.
    metadata_columns: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Rows whose value here is 1/true are rejected as "marked error" (MIMIC's ISERROR).
    error_column: str | None = None
    delimiter: str = ","
    #: Recorded as the `source_format` metadata of every note.
    source_format: str = "csv"
    #: The corpus's own split of each row (train/dev/test), for the executor's `split_source` "field".
    split_column: str | None = None
    #: The second text of each row, for text-pair tasks (question + passage); None: one text per row.
    text_b_column: str | None = None

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], base: CsvConfig | None = None) -> CsvConfig:
        """Builds a config from JSON fields, on top of `base` when given (e.g. to regroup MIMIC)."""
        records.check_config_keys("csv", config, cls)
        if base is not None:
            return dataclasses.replace(base, **config)
        if "id_column" not in config or "text_column" not in config:
            raise ValueError("csv reader config needs at least 'id_column' and 'text_column'")
        return cls(**config)

    def required_columns(self) -> tuple[str, ...]:
        optional = (
            self.text_b_column,
            self.label_column,
            self.group_column,
            self.error_column,
            self.split_column,
        )
        named = (self.id_column, self.text_column, *optional, *self.metadata_columns.values())
        return tuple(dict.fromkeys(c for c in named if c))


#: MTSamples as shipped in data/sample: one row per (note, specialty), so a note listed under two
#: specialties is a duplicate whose labels merge. description/sample_name are left out: free text.
MTSAMPLES_CSV = CsvConfig(
    id_column="sample_id",
    text_column="transcription",
    label_column="medical_specialty",
    group_column="sample_id",
    metadata_columns={"specialty": "medical_specialty"},
)

#: MIMIC-III NOTEEVENTS.csv. Grouped by patient so that no patient straddles splits. CHARTDATE and
#: the other times are dates (PHI) and are not kept; HADM_ID and CGID are not needed.
MIMIC_NOTEEVENTS = CsvConfig(
    id_column="ROW_ID",
    text_column="TEXT",
    label_column="CATEGORY",
    group_column="SUBJECT_ID",
    metadata_columns={"note_type": "CATEGORY", "description": "DESCRIPTION"},
    error_column="ISERROR",
    source_format="mimic",
)


@dataclasses.dataclass(frozen=True)
class _RawRecord:
    first_line: int
    #: None when the record was longer than the cap.
    data: bytes | None
    #: False when the file ended inside a quoted field.
    complete: bool


def _csv_records(lines: Iterator[Line], cap: int) -> Iterator[_RawRecord]:
    """Groups physical lines into CSV records: a record ends at a newline outside quotes (RFC 4180).

    Counting quotes finds record ends without parsing, so an oversize record can be skipped without
    being held. A stray quote inside an unquoted field (not RFC 4180) merges lines up to the next
    one; the merged record then fails to parse and is rejected as one malformed row.
    """
    parts: list[bytes] = []
    first_line = 0
    size = quotes = 0
    too_big = False
    for line in lines:
        if not first_line:
            if line.data is not None and not line.data.strip(b"\r\n"):
                continue
            first_line = line.number
        size += line.length
        quotes += line.quotes
        if line.data is None or size > cap:
            too_big = True
            parts.clear()
        elif not too_big:
            parts.append(line.data)
        if quotes % 2 == 0:
            yield _RawRecord(first_line, None if too_big else b"".join(parts), complete=True)
            parts.clear()
            first_line = size = quotes = 0
            too_big = False
    if first_line:
        yield _RawRecord(first_line, None, complete=False)


def _parse_csv_record(data: bytes, delimiter: str, encoding: str = "utf-8") -> list[str] | None:
    """The fields of one record, or None if it is not exactly one well-formed row."""
    text = data.replace(b"\x00", b"").decode(encoding)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _resolve_columns(header: list[str], wanted: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """Maps each wanted column to its index in the header; returns also the ones not found."""
    exact = {name: i for i, name in enumerate(header)}
    folded = {name.casefold(): i for i, name in reversed(list(enumerate(header)))}
    found, missing = {}, []
    for column in wanted:
        index = exact.get(column, folded.get(column.casefold()))
        if index is None:
            missing.append(column)
        else:
            found[column] = index
    return found, missing


def _is_marked(value: str) -> bool:
    return value.strip().casefold() in {"1", "1.0", "true", "t", "yes", "y"}


def _csv_note(
    fields: list[str],
    columns: dict[str, int],
    config: CsvConfig,
    locator: str,
    max_note_bytes: int,
) -> ReadResult:
    """One well-formed row of the right width, every configured column present."""

    def value(column: str | None) -> str:
        return fields[columns[column]].strip() if column else ""

    if config.error_column and _is_marked(value(config.error_column)):
        return Reject(locator, records.MARKED_ERROR)
    note_id = value(config.id_column)
    if not note_id:
        return Reject(locator, records.MISSING_FIELD, config.id_column)
    text = fields[columns[config.text_column]]
    text_b = None
    if config.text_b_column:
        text_b = fields[columns[config.text_b_column]]
        if not text_b.strip():
            return Reject(locator, records.MISSING_FIELD, config.text_b_column)
    if problem := records.text_problem(text, max_note_bytes, text_b):
        return Reject(locator, problem)
    label = value(config.label_column)
    metadata = {key: value(column) for key, column in config.metadata_columns.items() if value(column)}
    return NoteRecord(
        note_id=note_id,
        group_id=value(config.group_column) or note_id,
        text=text,
        labels=(label,) if label else (),
        metadata={**metadata, "source_format": config.source_format},
        locator=locator,
        split=value(config.split_column),
        text_b=text_b,
    )


def read_csv(path: str, name: str, config: CsvConfig, max_note_bytes: int) -> Iterator[ReadResult]:
    """Reads a CSV file with a header row; rows are numbered from 1 after the header."""
    cap = _CSV_ESCAPE_FACTOR * max_note_bytes + _RECORD_SLACK
    if csv.field_size_limit() < cap:
        csv.field_size_limit(cap)
    wanted = config.required_columns()
    header: list[str] | None = None
    row = 0
    with open_binary(path) as stream:
        for record in _csv_records(physical_lines(stream, keep=cap), cap):
            if header is None:
                try:
                    parsed = record.data and _parse_csv_record(record.data, config.delimiter, "utf-8-sig")
                except UnicodeDecodeError:
                    parsed = None
                header = [column.strip() for column in parsed or []]
                columns, missing = _resolve_columns(header, wanted)
                continue
            row += 1
            locator = f"{name}:row {row}"
            if not record.complete:
                yield Reject(locator, records.MALFORMED_CSV_ROW, "file ends inside a quoted field")
                continue
            if record.data is None:
                yield Reject(locator, records.OVERSIZE)
                continue
            try:
                fields = _parse_csv_record(record.data, config.delimiter)
            except UnicodeDecodeError:
                yield Reject(locator, records.UNREADABLE_ENCODING)
                continue
            if fields is None or len(fields) != len(header):
                width = "unparseable" if fields is None else f"{len(fields)} fields"
                yield Reject(locator, records.MALFORMED_CSV_ROW, f"{width}, header has {len(header)}")
                continue
            if missing:
                yield Reject(locator, records.MISSING_COLUMN, ", ".join(missing))
                continue
            row_id = fields[columns[config.id_column]].strip()[:_LOCATOR_ID_CHARS]
            if row_id:
                locator = f"{locator} ({config.id_column}={row_id})"
            yield _csv_note(fields, columns, config, locator, max_note_bytes)


@dataclasses.dataclass(frozen=True)
class JsonlConfig:
    """Which keys of each JSON object hold what."""

    id_key: str = "id"
    text_key: str = "text"
    #: A string or a list of strings.
    labels_key: str | None = None
    #: Defaults to the id: each note its own group.
    group_key: str | None = None
    #: Metadata key -> JSON key. Categorical fields only.
    metadata_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Entity annotations for token classification: a list of {"start", "end", "type"} objects,
    #: character offsets into the text (end exclusive), as `data/sample/ncbi_disease_sample.jsonl`
    #: has under "entities".
    spans_key: str | None = None
    #: The corpus's own split of each note (a string), for the executor's `split_source` "field".
    split_key: str | None = None
    #: The second text of each note, for text-pair tasks (question + passage): a string, or a list of
    #: strings joined with "\n" (PubMedQA's CONTEXTS, one abstract section each). None: one text per note.
    text_b_key: str | None = None

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> JsonlConfig:
        records.check_config_keys("jsonl", config, cls)
        return cls(**config)


def _scalar(value: Any) -> str:
    """A JSON string or number as text ("" for anything else); ids are often numbers."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _joined_text(value: Any) -> str | None:
    """A JSON string, or a list of strings joined with newlines; None for anything else or a blank."""
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        value = "\n".join(value)
    return value if isinstance(value, str) and value.strip() else None


def _jsonl_note(obj: Any, config: JsonlConfig, locator: str, max_note_bytes: int) -> ReadResult:
    if not isinstance(obj, dict):
        return Reject(locator, records.MALFORMED_JSON, "line is not a JSON object")
    note_id = _scalar(obj.get(config.id_key))
    if not note_id:
        return Reject(locator, records.MISSING_FIELD, config.id_key)
    text = obj.get(config.text_key)
    if not isinstance(text, str):
        return Reject(locator, records.MISSING_FIELD, config.text_key)
    text_b = None
    if config.text_b_key:
        text_b = _joined_text(obj.get(config.text_b_key))
        if text_b is None:
            return Reject(locator, records.MISSING_FIELD, config.text_b_key)
    if problem := records.text_problem(text, max_note_bytes, text_b):
        return Reject(locator, problem)
    raw_labels = obj.get(config.labels_key) if config.labels_key else None
    listed = raw_labels if isinstance(raw_labels, list) else [raw_labels]
    labels = tuple(label for label in map(_scalar, listed) if label)
    metadata = {key: _scalar(obj.get(field)) for key, field in config.metadata_keys.items()}
    spans = None
    if config.spans_key:
        if not isinstance(obj.get(config.spans_key), list):
            return Reject(locator, records.MISSING_FIELD, config.spans_key)
        spans = _spans(obj[config.spans_key], text, config.spans_key)
        if isinstance(spans, str):
            return Reject(locator, records.BAD_SPANS, spans)
    return NoteRecord(
        note_id=note_id,
        group_id=(_scalar(obj.get(config.group_key)) if config.group_key else "") or note_id,
        text=text,
        labels=labels,
        metadata={**{k: v for k, v in metadata.items() if v}, "source_format": "jsonl"},
        locator=locator,
        spans=spans,
        split=_scalar(obj.get(config.split_key)) if config.split_key else "",
        text_b=text_b,
    )


def _spans(items: list, text: str, key: str) -> tuple[records.Span, ...] | str:
    """The annotations as ordered `Span`s, or what is wrong with them (never quoting the text)."""
    spans = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            return f"{where} is not an object"
        start, end, kind = item.get("start"), item.get("end"), item.get("type")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            return f"{where}: start and end must be integers"
        if not 0 <= start < end <= len(text):
            return f"{where}: {start}-{end} is not a non-empty span of a {len(text)}-character text"
        if not isinstance(kind, str) or not kind.strip():
            return f"{where}: type must be a non-empty string"
        spans.append(records.Span(start, end, kind.strip()))
    spans.sort(key=lambda span: span.start)
    for before, after in itertools.pairwise(spans):
        if after.start < before.end:
            return f"{key}: spans {before.start}-{before.end} and {after.start}-{after.end} overlap"
    return tuple(spans)


def read_jsonl(path: str, name: str, config: JsonlConfig, max_note_bytes: int) -> Iterator[ReadResult]:
    """Reads JSON Lines: one object per line; blank lines are not records."""
    cap = _JSON_ESCAPE_FACTOR * max_note_bytes + _RECORD_SLACK
    with open_binary(path) as stream:
        for line in physical_lines(stream, keep=cap):
            locator = f"{name}:line {line.number}"
            if line.data is None:
                yield Reject(locator, records.OVERSIZE)
                continue
            if not line.data.strip():
                continue
            try:
                text = line.data.decode("utf-8")
            except UnicodeDecodeError:
                yield Reject(locator, records.UNREADABLE_ENCODING)
                continue
            try:
                # strict=False admits raw control characters (tabs, NULs) inside strings; normalization
                # deals with them.
                obj = json.loads(text, strict=False)
            except (ValueError, RecursionError):
                yield Reject(locator, records.MALFORMED_JSON)
                continue
            yield _jsonl_note(obj, config, locator, max_note_bytes)


@dataclasses.dataclass(frozen=True)
class TextDirConfig:
    """How a folder of `.txt` notes maps to groups and labels."""

    #: Searched in the note's relative path; its named group `group` (else group 1, else the whole
    #: match) is the group id, e.g. `^(?P<group>[^/]+)/` for one folder per patient. No match, or no
    #: pattern: the note is its own group.
    group_pattern: str | None = None
    #: Use the name of the folder holding the note as its label.
    label_from_parent: bool = False

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> TextDirConfig:
        records.check_config_keys("text_dir", config, cls)
        made = cls(**config)
        if made.group_pattern is not None:
            try:
                re.compile(made.group_pattern)
            except re.error as error:
                raise ValueError(
                    f"text_dir reader config: group_pattern is not a regex: {error.msg}"
                ) from None
        return made


def _group_from_path(relative: str, pattern: str | None) -> str:
    match = re.search(pattern, relative) if pattern else None
    if match is None:
        return ""
    if "group" in match.re.groupindex:
        return match.group("group") or ""
    return (match.group(1) if match.re.groups else match.group(0)) or ""


def read_text_file(path: str, name: str, config: TextDirConfig, max_note_bytes: int) -> Iterator[ReadResult]:
    """Reads one `.txt` note; `name` is its path relative to the input folder, and its note id."""
    if fileio.stat(path).length > max_note_bytes + len(b"\xef\xbb\xbf"):
        yield Reject(name, records.OVERSIZE)
        return
    with fileio.open(path, "rb") as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield Reject(name, records.UNREADABLE_ENCODING)
        return
    if problem := records.text_problem(text, max_note_bytes):
        yield Reject(name, problem)
        return
    parent = posixpath.basename(posixpath.dirname(name))
    yield NoteRecord(
        note_id=name,
        group_id=_group_from_path(name, config.group_pattern) or name,
        text=text,
        labels=(parent,) if config.label_from_parent and parent else (),
        metadata={"source_format": "text_dir"},
        locator=name,
    )


def make_reader(input_format: str, reader_config: Mapping[str, Any], max_note_bytes: int) -> Reader:
    """The reader for `input_format`, configured; raises ValueError on a bad format or config."""
    if max_note_bytes <= 0:
        raise ValueError(f"max_note_bytes must be positive, got {max_note_bytes}")
    config: Any
    if input_format == "csv":
        config, read = CsvConfig.from_dict(reader_config), read_csv
    elif input_format == "mimic":
        # Imported here: mimic_codes builds on this module's CSV reader (labels from ICD codes, categories).
        from components.clinical_example_gen import mimic_codes

        return mimic_codes.make_reader(reader_config, max_note_bytes)
    elif input_format == "text_dir":
        config, read = TextDirConfig.from_dict(reader_config), read_text_file
    elif input_format == "jsonl":
        config, read = JsonlConfig.from_dict(reader_config), read_jsonl
    elif input_format == "fhir":
        config, read = FhirConfig.from_dict(reader_config), read_fhir
    elif input_format == "i2b2":
        config, read = i2b2_reader.I2b2Config.from_dict(reader_config), i2b2_reader.read_i2b2
    elif input_format == "conll":
        config, read = conll_reader.ConllConfig.from_dict(reader_config), conll_reader.read_conll
    else:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
    return functools.partial(read, config=config, max_note_bytes=max_note_bytes)


def list_input_files(input_base: str, input_format: str) -> list[tuple[str, str]]:
    """(path, name) of each input file, sorted; `name` is relative to `input_base` and used in locators.

    `input_base` is one file, or a folder searched recursively for the format's suffixes (hidden
    files skipped).
    """
    if input_format not in FILE_SUFFIXES:
        raise ValueError(f"input_format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if not fileio.exists(input_base):
        raise FileNotFoundError(f"input_base does not exist: {input_base}")
    if not fileio.isdir(input_base):
        return [(input_base, posixpath.basename(input_base))]
    base = input_base.rstrip("/")
    found = []
    for folder, _, files in fileio.walk(base):
        for file_name in files:
            if file_name.startswith(".") or not file_name.endswith(FILE_SUFFIXES[input_format]):
                continue
            path = posixpath.join(folder, file_name)
            found.append((path, path[len(base) + 1 :]))
    return sorted(found, key=lambda item: item[1])
