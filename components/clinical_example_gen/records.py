"""What the readers yield: a note that may go on (`NoteRecord`) or a record that may not (`Reject`).

Every input record becomes exactly one of the two, which is what makes the ingest report's accounting
(input = kept + duplicates collapsed + rejected) possible. Neither type ever shows note text in its
repr, and a `Reject` has no field that could hold it: it names the record (its locator) and the
problem (a stable reason string, plus an optional detail such as a column name or a FHIR element path).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

# Reject reasons. These strings are the keys of `rejected_by_reason` in the report; keep them stable.
EMPTY_TEXT = "empty text"
UNREADABLE_ENCODING = "unreadable encoding"
MISSING_COLUMN = "missing column"
MISSING_FIELD = "missing field"
MALFORMED_JSON = "malformed JSON"
MALFORMED_CSV_ROW = "malformed CSV row"
OVERSIZE = "oversize"
MARKED_ERROR = "marked error"
ATTACHMENT_BY_URL = "attachment by URL not supported"
UNSUPPORTED_ATTACHMENT = "unsupported attachment"
INVALID_FHIR_RESOURCE = "invalid FHIR resource"
BAD_SPANS = "bad entity spans"
UNKNOWN_SPLIT = "unknown split"
MALFORMED_CONLL = "malformed CoNLL line"

REJECT_REASONS: tuple[str, ...] = (
    EMPTY_TEXT,
    UNREADABLE_ENCODING,
    MISSING_COLUMN,
    MISSING_FIELD,
    MALFORMED_JSON,
    MALFORMED_CSV_ROW,
    OVERSIZE,
    MARKED_ERROR,
    ATTACHMENT_BY_URL,
    UNSUPPORTED_ATTACHMENT,
    INVALID_FHIR_RESOURCE,
    BAD_SPANS,
    MALFORMED_CONLL,
    UNKNOWN_SPLIT,
)


@dataclasses.dataclass(frozen=True)
class Span:
    """An annotated entity: characters `start` to `end` (exclusive) of its note's text, and its type."""

    start: int
    end: int
    type: str


@dataclasses.dataclass(frozen=True)
class NoteRecord:
    """One note as read from its source, before any text processing."""

    note_id: str
    #: The unit that must not straddle splits (a patient, or the note itself when nothing groups notes).
    group_id: str
    text: str = dataclasses.field(repr=False)
    labels: tuple[str, ...] = ()
    #: Short categorical fields (note_type, specialty, source_format); never free text.
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Where the record came from, without its text: `file:line 3`, `file:row 12 (id=7)`, ...
    locator: str = ""
    #: Entity annotations for token classification, in order, none overlapping; None where the source
    #: annotates none (as against () for an annotated note without entities).
    spans: tuple[Span, ...] | None = None
    #: The source's own split for this record, as its reader found it (a CSV column, a JSON key); the
    #: executor replaces it with the split name when `split_source` predefines splits. Empty otherwise.
    split: str = ""
    #: The second text of a pair (a question's passage, as in PubMedQA); None when the corpus has one
    #: text per record. Spans never point into it.
    text_b: str | None = dataclasses.field(default=None, repr=False)

    @property
    def note_type(self) -> str:
        return self.metadata.get("note_type", "")


@dataclasses.dataclass(frozen=True)
class Reject:
    """A record that produced no note, and why."""

    locator: str
    reason: str
    #: What exactly was wrong, when the reason alone does not say: a column name, an element path.
    detail: str = ""
    #: The kind of record, where the format has kinds (the FHIR resource type); counted in the report.
    record_type: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {self.reason!r}; expected one of {REJECT_REASONS}")

    def to_json(self) -> dict[str, Any]:
        """The rejects.jsonl line for this record."""
        line = {"locator": self.locator, "reason": self.reason}
        if self.detail:
            line["detail"] = self.detail
        if self.record_type:
            line["record_type"] = self.record_type
        return line


@dataclasses.dataclass(frozen=True)
class Skipped:
    """Input records that are not notes (a FHIR Patient or Observation beside the documents): counted,
    by kind and file, so that every record of the input is accounted for, and otherwise passed over."""

    #: The file they were found in.
    locator: str
    record_type: str
    count: int = 1


@dataclasses.dataclass(frozen=True)
class ProcessedNote:
    """A note after normalization, placeholder replacement, scrubbing and sentence segmentation."""

    note_id: str
    group_id: str
    text: str = dataclasses.field(repr=False)
    sentences: tuple[str, ...] = dataclasses.field(repr=False)
    labels: tuple[str, ...]
    note_type: str
    #: Replacements made in this note, per PHI token (`[DATE]`: 2): placeholders and scrubber finds.
    phi_counts: Mapping[str, int]
    locator: str
    #: The record's spans, moved to this text (see `NoteRecord.spans`).
    spans: tuple[Span, ...] | None = None
    #: The predefined split this note belongs to (see `NoteRecord.split`); empty under hash splitting.
    split: str = ""
    #: A pair's second text, processed as `text` is but not segmented (see `NoteRecord.text_b`).
    text_b: str | None = dataclasses.field(default=None, repr=False)


def _utf8_size(text: str) -> int:
    # Lone surrogates (JSON allows them) count as the bytes they would take.
    return len(text.encode("utf-8", errors="surrogatepass"))


def text_problem(text: str, max_note_bytes: int, text_b: str | None = None) -> str | None:
    """The reason a note's text cannot be kept (empty, or over `max_note_bytes` in UTF-8), or None.

    A pair's second text `text_b` counts toward `max_note_bytes` together with the first; whether it
    is present and non-empty is the reader's to check (a pair missing it is a `missing field`).
    """
    if not text.strip():
        return EMPTY_TEXT
    if _utf8_size(text) + (_utf8_size(text_b) if text_b else 0) > max_note_bytes:
        return OVERSIZE
    return None


def check_config_keys(kind: str, given: Mapping[str, Any], allowed: type) -> None:
    """Raises ValueError naming the keys of a `kind` reader's config that dataclass `allowed` lacks."""
    unknown = set(given) - {field.name for field in dataclasses.fields(allowed)}
    if unknown:
        raise ValueError(f"{kind} reader config: unknown keys {sorted(unknown)}")
