"""Notes from FHIR R4 `DocumentReference`s, alone or in `Bundle`s, in `.json` or `.ndjson` files.

Each DocumentReference is one record: validated with `fhir.resources.R4B` (the package's top-level
modules are R5, whose DocumentReference changed shape; R4B keeps R4's, so R4 resources validate), then
its first `text/plain` (or untyped) attachment with inline `data` is decoded with the charset its
`contentType` names, UTF-8 by default. Resources are validated one by one, not as a whole Bundle, so a
bad entry rejects that entry only. A resource that fails validation is rejected with the failing
element paths and error types only: pydantic's own message quotes the offending input, which can be
note text. Attachments by URL are not fetched: ingestion never reaches the network. Other resource
types (a Patient in the same Bundle) are not notes and are passed over without being counted.

`.ndjson` (FHIR Bulk Data's format) streams line by line. A `.json` file is a single JSON document and
is parsed whole, so it is capped at `_JSON_FILE_FACTOR` x max_note_bytes; use ndjson for bulk exports.
"""

from __future__ import annotations

import dataclasses
import html.parser
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic
from fhir.resources.R4B.documentreference import DocumentReference
from tfx.dsl.io import fileio

from components.clinical_example_gen import records
from components.clinical_example_gen.lines import open_binary, physical_lines
from components.clinical_example_gen.records import NoteRecord, Reject

#: Base64 makes 3 bytes 4; the rest is the resource around the attachment.
_NDJSON_LINE_FACTOR = 2
_RESOURCE_SLACK = 1 << 20
_JSON_FILE_FACTOR = 64
#: Validation errors named in a reject's detail.
_MAX_ERRORS_SHOWN = 3


@dataclasses.dataclass(frozen=True)
class FhirConfig:
    """Options of the FHIR reader."""

    #: Fall back to the resource's `text.div` narrative (tags stripped) when it has no inline
    #: attachment. Off by default: the narrative is usually a generated summary of the resource's
    #: fields, not the document, and training on it would teach the model FHIR boilerplate.
    narrative_fallback: bool = False

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> FhirConfig:
        unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"fhir reader config: unknown keys {sorted(unknown)}")
        return cls(**config)


class _TextOnly(html.parser.HTMLParser):
    """Collects the character data of an XHTML narrative."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _narrative_text(div: str) -> str:
    parser = _TextOnly()
    parser.feed(div)
    parser.close()
    return "".join(parser.parts)


def _validation_detail(error: pydantic.ValidationError) -> str:
    """Where validation failed and what kind of failure, never the input value."""
    shown = [
        f"{'.'.join(str(part) for part in item['loc']) or '(resource)'} ({item['type']})"
        for item in error.errors(include_input=False, include_url=False)[:_MAX_ERRORS_SHOWN]
    ]
    more = error.error_count() - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def _media_type(content_type: str | None) -> tuple[str | None, str]:
    """(`text/plain`, charset) from a contentType such as `text/plain; charset=ISO-8859-1`."""
    if not content_type:
        return None, "utf-8"
    mime, *params = (part.strip() for part in content_type.split(";"))
    charset = "utf-8"
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    return mime.lower(), charset


def _inline_sizes_ok(resource: Mapping[str, Any], max_note_bytes: int) -> bool:
    """Whether every inline attachment would decode to at most `max_note_bytes`, checked before
    validation decodes any of them."""
    contents = resource.get("content")
    for content in contents if isinstance(contents, list) else []:
        attachment = content.get("attachment") if isinstance(content, dict) else None
        data = attachment.get("data") if isinstance(attachment, dict) else None
        if isinstance(data, str) and len(data) // 4 * 3 > max_note_bytes + 3:
            return False
    return True


def _document_text(doc: DocumentReference, config: FhirConfig, locator: str) -> str | Reject:
    by_url = False
    unsupported = ""
    for content in doc.content or []:
        attachment = content.attachment
        mime, charset = _media_type(attachment.contentType)
        if mime not in (None, "text/plain"):
            unsupported = mime
            continue
        if attachment.data is not None:
            try:
                return attachment.data.decode(charset, errors="strict")
            except UnicodeDecodeError:
                return Reject(locator, records.UNREADABLE_ENCODING)
            except LookupError:
                return Reject(locator, records.UNREADABLE_ENCODING, "unknown charset in contentType")
        by_url = by_url or bool(attachment.url)
    if config.narrative_fallback and doc.text is not None and doc.text.div:
        return _narrative_text(doc.text.div)
    if by_url:
        return Reject(locator, records.ATTACHMENT_BY_URL)
    if unsupported:
        return Reject(locator, records.UNSUPPORTED_ATTACHMENT, unsupported)
    return Reject(locator, records.MISSING_FIELD, "content.attachment.data")


def _note_type(doc: DocumentReference) -> tuple[str, str]:
    """(note type, type code) from `type.coding[0]` (display, else code), else `type.text`."""
    if doc.type is None:
        return "", ""
    coding = doc.type.coding[0] if doc.type.coding else None
    code = (coding.code or "") if coding else ""
    display = (coding.display or "") if coding else ""
    return display or code or doc.type.text or "", code


def _document_note(
    resource: Mapping[str, Any], locator: str, config: FhirConfig, max_note_bytes: int
) -> NoteRecord | Reject:
    if not _inline_sizes_ok(resource, max_note_bytes):
        return Reject(locator, records.OVERSIZE)
    try:
        doc = DocumentReference.model_validate(resource)
    except pydantic.ValidationError as error:
        return Reject(locator, records.INVALID_FHIR_RESOURCE, _validation_detail(error))
    except Exception as error:
        # fhir.resources raises plain errors on some inputs (a KeyError for an unknown contained
        # resource type); untrusted input must not stop the run.
        return Reject(locator, records.INVALID_FHIR_RESOURCE, f"validation failed ({type(error).__name__})")
    if not doc.id:
        return Reject(locator, records.MISSING_FIELD, "id")
    text = _document_text(doc, config, locator)
    if isinstance(text, Reject):
        return text
    if not text.strip():
        return Reject(locator, records.EMPTY_TEXT)
    if len(text.encode("utf-8")) > max_note_bytes:
        return Reject(locator, records.OVERSIZE)
    note_type, type_code = _note_type(doc)
    metadata = {"note_type": note_type, "type_code": type_code, "source_format": "fhir"}
    subject = doc.subject.reference if doc.subject is not None else None
    return NoteRecord(
        note_id=doc.id,
        group_id=subject or doc.id,
        text=text,
        labels=(note_type,) if note_type else (),
        metadata={key: value for key, value in metadata.items() if value},
        locator=locator,
    )


def _notes_in(
    resource: Any, locator: str, entry_prefix: str, config: FhirConfig, max_note_bytes: int
) -> Iterator[NoteRecord | Reject]:
    """The records in one JSON document: a DocumentReference, or the DocumentReferences of a Bundle
    (located as `entry_prefix` + the entry's index)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        yield Reject(locator, records.INVALID_FHIR_RESOURCE, "not a FHIR resource (no resourceType)")
        return
    kind = resource["resourceType"]
    if kind == "DocumentReference":
        yield _document_note(resource, locator, config, max_note_bytes)
    elif kind == "Bundle":
        entries = resource.get("entry") or []
        if not isinstance(entries, list):
            yield Reject(locator, records.INVALID_FHIR_RESOURCE, "Bundle.entry is not a list")
            return
        for index, entry in enumerate(entries):
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict) and inner.get("resourceType") == "DocumentReference":
                yield _document_note(inner, f"{entry_prefix}{index}", config, max_note_bytes)


def _parse(data: bytes, locator: str) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"), strict=False)
    except UnicodeDecodeError:
        return Reject(locator, records.UNREADABLE_ENCODING)
    except (ValueError, RecursionError):
        return Reject(locator, records.MALFORMED_JSON)


def read_fhir(path: str, name: str, config: FhirConfig, max_note_bytes: int) -> Iterator[NoteRecord | Reject]:
    """Reads a `.ndjson` (one resource per line) or `.json` (one resource) file of FHIR resources.

    Locators: `file` or `file:entry N` for `.json`, `file:line L` or `file:line L entry N` for
    `.ndjson`; N counts Bundle entries from 0, as FHIRPath's `Bundle.entry[N]` does.
    """
    if name.endswith(".ndjson"):
        with open_binary(path) as stream:
            for line in physical_lines(stream, keep=_NDJSON_LINE_FACTOR * max_note_bytes + _RESOURCE_SLACK):
                locator = f"{name}:line {line.number}"
                if line.data is None:
                    yield Reject(locator, records.OVERSIZE)
                elif line.data.strip():
                    parsed = _parse(line.data, locator)
                    if isinstance(parsed, Reject):
                        yield parsed
                    else:
                        yield from _notes_in(parsed, locator, f"{locator} entry ", config, max_note_bytes)
        return
    if fileio.stat(path).length > _JSON_FILE_FACTOR * max_note_bytes:
        yield Reject(name, records.OVERSIZE)
        return
    with fileio.open(path, "rb") as stream:
        parsed = _parse(stream.read(), name)
    if isinstance(parsed, Reject):
        yield parsed
    else:
        yield from _notes_in(parsed, name, f"{name}:entry ", config, max_note_bytes)
