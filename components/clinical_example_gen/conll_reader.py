"""Reader for CoNLL/IOB files: one token a line with its BIO tag (`B-Disease`, `I-Disease`, `O`) in
columns split by a tab, and a blank line after each sentence, as the NCBI-disease files of BLURB come.
A record's tokens are joined into its text (the words of a sentence by one space, sentences by a
newline) and each entity becomes a character `Span` of that text, so such corpora reach the
token-classification task like any other span-annotated notes.

What a record is: a document where the file marks documents (`-DOCSTART-` lines, or a document-id
column whose change of value starts the next document), else a sentence. With `record="auto"` the
file is read as documents when `doc_id_column` is set or its first non-blank line is `-DOCSTART-`;
deciding there lets the file be read once, streaming. A sentence record's group is its document, where
the file has documents, so that a document's sentences stay in one split.

Bad input: a malformed line (a column count other than the file's first token line's, or `columns`;
an empty token; a tag other than `O`, `B-T`, `I-T`, or of a type outside `types`; an `I-T` that does
not continue a `T` entity, since tags are read as strict BIO) rejects the record, document or sentence,
that it belongs to, because that record's entity spans can no longer be trusted; the file's other
records are kept. A reject's detail names the line and the problem and may show the tag (cut to 40
characters), never a token: tokens are note text. A record over `max_note_bytes` of text is rejected
as oversize, one holding a line that is not UTF-8 as unreadable; a line longer than the line cap is
never held, and rejects the record it falls in as oversize.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from components.clinical_example_gen import records
from components.clinical_example_gen.lines import Line, open_binary, physical_lines
from components.clinical_example_gen.records import NoteRecord, Reject, Span

FILE_SUFFIXES = (".tsv", ".conll", ".iob", ".tsv.gz", ".conll.gz", ".iob.gz")
RECORD_UNITS = ("auto", "document", "sentence")
DOCSTART = "-DOCSTART-"

#: Bytes a line may take beyond a whole note's text (its other columns) before it is dropped unread.
_LINE_SLACK = 64 * 1024
#: Longest tag shown in a reject's detail: a misconfigured tag column must not copy text out.
_TAG_CHARS = 40


@dataclasses.dataclass(frozen=True)
class ConllConfig:
    """Where each line's token, tag and document id are, and what a record is."""

    #: Column separator; None splits on any run of whitespace (CoNLL-2003's spaces).
    delimiter: str | None = "\t"
    #: Column indices from 0; negative ones count from the end (-1: the last column).
    token_column: int = 0
    tag_column: int = -1
    #: A column naming the document; a change of its value starts a new document.
    doc_id_column: int | None = None
    #: "auto" (documents where the file marks them, else sentences), "document" or "sentence".
    record: str = "auto"
    #: The entity types allowed; a tag of another type is malformed. None: any type.
    types: tuple[str, ...] | None = None
    #: The column count every line must have; None: the count of the file's first token line.
    columns: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.delimiter is not None and (
            not isinstance(self.delimiter, str) or not self.delimiter or set(self.delimiter) & {"\n", "\r"}
        ):
            problems.append(
                f"delimiter must be null or a non-empty string without newlines, got {self.delimiter!r}"
            )
        named = {"token_column": self.token_column, "tag_column": self.tag_column}
        if self.doc_id_column is not None:
            named["doc_id_column"] = self.doc_id_column
        for key, index in named.items():
            if not _is_int(index):
                problems.append(f"{key} must be an integer, got {index!r}")
        if self.columns is not None and (not _is_int(self.columns) or self.columns < 2):
            problems.append(f"columns must be null or an integer of at least 2, got {self.columns!r}")
        elif not problems and self.columns is not None and _resolve(self, self.columns) is None:
            problems.append(f"{named} are not {len(named)} different columns of {self.columns}")
        elif not problems and len(set(named.values())) < len(named):
            problems.append(f"{named} must name different columns")
        if self.record not in RECORD_UNITS:
            problems.append(f"record must be one of {RECORD_UNITS}, got {self.record!r}")
        if self.types is not None and (
            not isinstance(self.types, tuple) or not all(isinstance(t, str) and t for t in self.types)
        ):
            problems.append(f"types must be null or a list of non-empty strings, got {self.types!r}")
        if problems:
            raise ValueError("conll reader config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> ConllConfig:
        records.check_config_keys("conll", config, cls)
        given = dict(config)
        if isinstance(given.get("types"), list):
            given["types"] = tuple(given["types"])
        return cls(**given)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resolve(config: ConllConfig, count: int) -> tuple[int, int, int | None] | None:
    """The token, tag and document-id column of a `count`-column line, or None when the line lacks
    one of them or two of them fall on one column."""
    wanted = [config.token_column, config.tag_column]
    if config.doc_id_column is not None:
        wanted.append(config.doc_id_column)
    if not all(-count <= index < count for index in wanted):
        return None
    resolved = [index % count for index in wanted]
    if len(set(resolved)) < len(resolved):
        return None
    return resolved[0], resolved[1], resolved[2] if len(resolved) > 2 else None


def _bio(tag: str, types: tuple[str, ...] | None) -> tuple[str, str] | None:
    """("O", ""), ("B", type) or ("I", type); None for anything else."""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if prefix in ("B", "I") and dash and kind and (types is None or kind in types):
        return prefix, kind
    return None


def _columns(count: int) -> str:
    return f"{count} column" if count == 1 else f"{count} columns"


@dataclasses.dataclass
class _Record:
    """The record being read: its text so far, in pieces, and its entities, or why it is rejected."""

    #: The line of its first token; names the record.
    first_line: int
    note_id: str
    group_id: str
    parts: list[str] = dataclasses.field(default_factory=list)
    #: Code points and UTF-8 bytes of the text so far.
    length: int = 0
    size: int = 0
    spans: list[Span] = dataclasses.field(default_factory=list)
    #: The entity still open: (type, start); it ends where the text ends.
    entity: tuple[str, int] | None = None
    #: The next word starts a sentence.
    sentence_break: bool = False
    #: (reason, detail) of the first problem found; the record is then no longer kept.
    problem: tuple[str, str] | None = None

    def fail(self, reason: str, detail: str = "") -> None:
        if self.problem is None:
            self.problem = (reason, detail)
            self.parts.clear()
            self.spans.clear()
            self.entity = None

    def close_entity(self) -> None:
        if self.entity is not None:
            self.spans.append(Span(self.entity[1], self.length, self.entity[0]))
            self.entity = None

    def end_sentence(self) -> None:
        self.close_entity()
        self.sentence_break = bool(self.parts)

    def add(self, token: str, prefix: str, kind: str) -> None:
        """Appends a word tagged `prefix`-`kind` (an `I` continuing the open entity, checked before)."""
        if prefix != "I":
            self.close_entity()
        separator = ("\n" if self.sentence_break else " ") if self.parts else ""
        self.sentence_break = False
        start = self.length + len(separator)
        self.parts.append(separator + token)
        self.length = start + len(token)
        self.size += len(separator) + len(token.encode("utf-8"))
        if prefix == "B":
            self.entity = (kind, start)


class _Reader:
    """Turns the lines of one file into records; holds one record at a time."""

    def __init__(self, name: str, config: ConllConfig, max_note_bytes: int, line_cap: int) -> None:
        self.name = name
        self.config = config
        self.max_note_bytes = max_note_bytes
        self.line_cap = line_cap
        #: Whether records are documents; None until the first non-blank line decides (record="auto").
        self.documents: bool | None = {"document": True, "sentence": False}.get(config.record)
        if config.record == "auto" and config.doc_id_column is not None:
            self.documents = True
        self.expected = config.columns
        self.indices = _resolve(config, config.columns) if config.columns else None
        self.record: _Record | None = None
        #: The current document's id: its doc-id value, or `name:line` of its first token; None
        #: outside documents, or while a document's first token is still to come (`doc_started`).
        self.doc_key: str | None = None
        self.doc_started = False
        self.doc_value: str | None = None

    def read(self, lines: Iterator[Line]) -> Iterator[NoteRecord | Reject]:
        for line in lines:
            yield from self._line(line)
        if self.record is not None:
            yield self._finish()

    def _line(self, line: Line) -> Iterator[NoteRecord | Reject]:
        number = line.number
        if line.data is None:
            self._open(number).fail(records.OVERSIZE, f"line {number}: longer than {self.line_cap} bytes")
            return
        try:
            decoded = line.data.decode("utf-8-sig" if number == 1 else "utf-8")
            readable = True
        except UnicodeDecodeError:
            decoded = line.data.decode("utf-8", errors="surrogateescape")
            readable = False
        content = decoded.rstrip("\r\n")
        if not content.strip():
            if self.record is not None and self.documents:
                self.record.end_sentence()
            elif self.record is not None:
                yield self._finish()
            return
        fields = content.split(self.config.delimiter) if self.config.delimiter else content.split()
        if fields[0].strip() == DOCSTART:
            if self.documents is None:
                self.documents = True
            yield from self._new_document(None)
            return
        if self.documents is None:
            self.documents = False
        if self.expected is None:
            self.expected = len(fields)
            self.indices = _resolve(self.config, self.expected)
        if len(fields) != self.expected or self.indices is None:
            expected = f"expected {self.expected}" if self.indices else "too few for the configured columns"
            self._malformed(number, f"{_columns(len(fields))}, {expected}")
            return
        token_index, tag_index, doc_index = self.indices
        if doc_index is not None and fields[doc_index].strip() != self.doc_value:
            yield from self._new_document(fields[doc_index].strip())
        record = self._open(number)
        if record.problem is not None:
            return
        if not readable:
            record.fail(records.UNREADABLE_ENCODING, f"line {number}: not UTF-8")
            return
        token, tag = fields[token_index].strip(), fields[tag_index].strip()
        bio = _bio(tag, self.config.types)
        if not token:
            self._malformed(number, "empty token")
        elif bio is None:
            self._malformed(number, f"unknown tag {tag[:_TAG_CHARS]!r}")
        elif bio[0] == "I" and (record.entity is None or record.entity[0] != bio[1]):
            self._malformed(
                number, f"{tag[:_TAG_CHARS]} does not continue a {bio[1][: _TAG_CHARS - 2]} entity"
            )
        else:
            record.add(token, *bio)
            if record.size > self.max_note_bytes:
                record.fail(records.OVERSIZE)

    def _malformed(self, number: int, problem: str) -> None:
        self._open(number).fail(records.MALFORMED_CONLL, f"line {number}: {problem}")

    def _new_document(self, value: str | None) -> Iterator[NoteRecord | Reject]:
        if self.record is not None:
            yield self._finish()
        self.doc_value = value
        self.doc_key = value or None
        self.doc_started = True

    def _open(self, number: int) -> _Record:
        """The record being read, or a new one starting at line `number`."""
        if self.record is None:
            if self.doc_started and self.doc_key is None:
                self.doc_key = f"{self.name}:{number}"
            self.doc_started = False
            if self.documents:
                note_id = group_id = self.doc_key or f"{self.name}:{number}"
            else:
                note_id = f"{self.name}:{number}"
                group_id = self.doc_key or note_id
            self.record = _Record(number, note_id, group_id)
        return self.record

    def _finish(self) -> NoteRecord | Reject:
        record, self.record = self.record, None
        assert record is not None
        locator = f"{self.name}:line {record.first_line}"
        if record.problem is not None:
            return Reject(locator, *record.problem)
        record.close_entity()
        text = "".join(record.parts)
        if problem := records.text_problem(text, self.max_note_bytes):
            return Reject(locator, problem)
        return NoteRecord(
            note_id=record.note_id,
            group_id=record.group_id,
            text=text,
            metadata={"source_format": "conll"},
            locator=locator,
            spans=tuple(record.spans),
        )


def read_conll(
    path: str, name: str, config: ConllConfig, max_note_bytes: int
) -> Iterator[NoteRecord | Reject]:
    """Reads one CoNLL/IOB file (gzipped when its name ends in `.gz`); records are named by the line
    of their first token, `name:line 12`."""
    line_cap = max_note_bytes + _LINE_SLACK
    with open_binary(path) as stream:
        yield from _Reader(name, config, max_note_bytes, line_cap).read(physical_lines(stream, keep=line_cap))
