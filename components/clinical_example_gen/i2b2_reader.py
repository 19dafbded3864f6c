"""Reader for the i2b2/n2c2 2014 de-identification XML format: one note a file, its text in a `TEXT`
CDATA section and its PHI in `TAGS`, each tag with `start`, `end` (character offsets into the text),
`TYPE` (PATIENT, DOCTOR, HOSPITAL, DATE, ...) and `text`. Notes come with their spans as entity
annotations, so a team holding such a corpus trains a PHI tagger with the token-classification task;
the bench (`bench/phi_scrubber.py --i2b2`) scores the scrubber on it. A tag whose offsets do not point
at its `text` is rejected as bad entity spans, naming the tag, never quoting it.
"""

from __future__ import annotations

import dataclasses
import itertools
import posixpath
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from typing import Any

from tfx.dsl.io import fileio

from components.clinical_example_gen import records
from components.clinical_example_gen.records import NoteRecord, Reject, Span


@dataclasses.dataclass(frozen=True)
class I2b2Config:
    """`group_pattern`-free: the i2b2 2014 file name `220-01.xml` is patient 220, note 01."""

    #: Use the tag name (NAME, DATE, ...) instead of its TYPE attribute (DOCTOR, PATIENT, ...).
    use_category: bool = False

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> I2b2Config:
        records.check_config_keys("i2b2", config, cls)
        return cls(**config)


def parse_i2b2(data: bytes, use_category: bool = False) -> tuple[str, tuple[Span, ...]] | str:
    """The note text and its PHI spans, or what is wrong (without quoting the note)."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        return f"not well-formed XML (line {error.position[0]})"
    text_element = root.find("TEXT")
    if text_element is None or text_element.text is None:
        return "no TEXT element"
    text = text_element.text
    spans = []
    for index, tag in enumerate(root.find("TAGS") or ()):
        where = f"TAGS[{index}] ({tag.tag})"
        try:
            start, end = int(tag.get("start", "")), int(tag.get("end", ""))
        except ValueError:
            return f"{where}: start and end must be integers"
        if not 0 <= start < end <= len(text):
            return f"{where}: {start}-{end} is not a span of a {len(text)}-character text"
        if tag.get("text") is not None and text[start:end] != tag.get("text"):
            return f"{where}: the offsets do not point at the tag's text"
        kind = tag.tag if use_category else (tag.get("TYPE") or tag.tag)
        spans.append(Span(start, end, kind.strip().upper()))
    spans.sort(key=lambda span: span.start)
    for before, after in itertools.pairwise(spans):
        if after.start < before.end:
            return f"spans {before.start}-{before.end} and {after.start}-{after.end} overlap"
    return text, tuple(spans)


def read_i2b2(
    path: str, name: str, config: I2b2Config, max_note_bytes: int
) -> Iterator[records.NoteRecord | Reject]:
    """Reads one i2b2 XML file into one record; the patient is the file name before `-`."""
    if fileio.stat(path).length > 2 * max_note_bytes + 64 * 1024:
        yield Reject(name, records.OVERSIZE)
        return
    with fileio.open(path, "rb") as stream:
        parsed = parse_i2b2(stream.read(), config.use_category)
    if isinstance(parsed, str):
        yield Reject(
            name,
            records.BAD_SPANS if "TAGS" in parsed or "spans" in parsed else records.MISSING_FIELD,
            parsed,
        )
        return
    text, spans = parsed
    if problem := records.text_problem(text, max_note_bytes):
        yield Reject(name, problem)
        return
    stem = posixpath.basename(name).rsplit(".", 1)[0]
    yield NoteRecord(
        note_id=name,
        group_id=stem.split("-", 1)[0] or stem,
        text=text,
        metadata={"source_format": "i2b2"},
        locator=name,
        spans=spans,
    )
