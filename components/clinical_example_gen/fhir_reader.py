"""Notes from FHIR R4 resources in `.json` / `.ndjson` files (gzipped or not), as bulk exports and
servers write them.

What is a note: a `DocumentReference`'s first `text/plain` (or untyped) attachment with inline `data`,
and a `DiagnosticReport`'s `presentedForm` of the same kind; also such resources in another resource's
`contained` list. They are found at the top level of a file, in `Bundle`s of any type (transaction,
batch, searchset, collection, document; nested Bundles too), in a top-level JSON array of resources,
and one per line in `.ndjson` (FHIR Bulk Data). Each note resource is validated with
`fhir.resources.R4B` (the package's top-level modules are R5, whose DocumentReference changed shape;
R4B keeps R4's), one by one, so a bad entry rejects that entry only. A failed validation is reported by
element path and error type only: pydantic's own message quotes the input, which can be note text.
Attachments by URL are never fetched: ingestion never reaches the network.

Every resource is accounted for: a note, a reject with its reason (and its resource type), or a
resource that is not a note (a Patient, an Observation, a DiagnosticReport with no presentedForm),
counted per file and type as `Skipped`. A Bundle is a container, not a record; contained resources
other than notes are part of their container and not counted apart.

Identity, so that one patient never lands in two splits whatever shape the export gives its reference
(the split group is the note's subject):
- `Patient/X`, `https://host/fhir/Patient/X`, `.../Patient/X/_history/2` -> `Patient/X`;
- `urn:uuid:U` -> through the Bundle's `fullUrl` map to the entry's `Type/id`; an entry without an id,
  or a uuid not in the Bundle, gives `Patient/U` (`Reference.type` when set), as bulk exports and
  Synthea use the uuid as the id;
- a subject given only by `identifier` -> the Patient in the same Bundle with that identifier, else a
  key made of a hash of `system|value` (the value is often a medical record number, which must not
  reach the examples).
A note without an id takes its entry's `fullUrl` (transactions may identify entries that way).

`.json` files are parsed whole, so they are capped at `_JSON_FILE_FACTOR` x max_note_bytes after
decompression; use `.ndjson` for large exports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html.parser
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.documentreference import DocumentReference

from components.clinical_example_gen import records
from components.clinical_example_gen.lines import open_binary, physical_lines
from components.clinical_example_gen.records import NoteRecord, Reject, Skipped

#: Base64 makes 3 bytes 4; the rest is the resource around the attachment.
_NDJSON_LINE_FACTOR = 2
_RESOURCE_SLACK = 1 << 20
_JSON_FILE_FACTOR = 64
#: Validation errors named in a reject's detail.
_MAX_ERRORS_SHOWN = 3
#: Bundles inside Bundles deeper than this are rejected (a hostile file must not exhaust the stack).
_MAX_BUNDLE_DEPTH = 8

FILE_SUFFIXES = (".json", ".ndjson", ".json.gz", ".ndjson.gz")
_NOTE_TYPES = {"DocumentReference": DocumentReference, "DiagnosticReport": DiagnosticReport}
_LABEL_PATHS = ("type", "category", "")
_LABEL_FIELDS = ("display", "code")


@dataclasses.dataclass(frozen=True)
class FhirConfig:
    """Options of the FHIR reader."""

    #: Fall back to the resource's `text.div` narrative (tags stripped) when it has no inline
    #: attachment. Off by default: the narrative is usually a generated summary of the resource's
    #: fields, not the document, and training on it would teach the model FHIR boilerplate.
    narrative_fallback: bool = False
    #: Where a note's labels come from: "type" (DocumentReference.type, DiagnosticReport.code),
    #: "category" (both resources' category), or "" for none.
    label_path: str = "type"
    #: Only codings of this code system give labels ("" for any), e.g. "http://loinc.org".
    label_system: str = ""
    #: "display" (the coding's display, else its code) or "code".
    label_field: str = "display"
    #: Read DiagnosticReport.presentedForm as notes (reports with none are counted as not notes).
    diagnostic_reports: bool = True

    def __post_init__(self) -> None:
        if self.label_path not in _LABEL_PATHS:
            raise ValueError(
                f"fhir reader config: label_path must be one of {_LABEL_PATHS}, got {self.label_path!r}"
            )
        if self.label_field not in _LABEL_FIELDS:
            raise ValueError(
                f"fhir reader config: label_field must be one of {_LABEL_FIELDS}, got {self.label_field!r}"
            )

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> FhirConfig:
        records.check_config_keys("fhir", config, cls)
        return cls(**config)


@dataclasses.dataclass
class _Context:
    """What a Bundle tells about its entries: fullUrl -> (type, id), and identifiers of its Patients."""

    full_urls: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    identifiers: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)

    def extended(self, entries: list) -> _Context:
        context = _Context(dict(self.full_urls), dict(self.identifiers))
        for entry in entries:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                continue
            kind, resource_id = resource["resourceType"], _text(resource.get("id"))
            full_url = _text(entry.get("fullUrl"))
            if full_url:
                context.full_urls[full_url] = (kind, resource_id or _last_segment(full_url))
            key = f"{kind}/{resource_id or _last_segment(full_url)}" if (resource_id or full_url) else ""
            identifiers = resource.get("identifier")
            if key and isinstance(identifiers, list):
                for identifier in identifiers:
                    if isinstance(identifier, dict) and _text(identifier.get("value")):
                        pair = (_text(identifier.get("system")), _text(identifier.get("value")))
                        context.identifiers.setdefault(pair, key)
        return context


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _last_segment(url: str) -> str:
    """The id part of a fullUrl: the uuid of `urn:uuid:U`, the last path segment of a URL."""
    if url.startswith(("urn:uuid:", "urn:oid:")):
        return url.rsplit(":", 1)[1]
    parts = [part for part in url.split("/") if part]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-1] if parts else url


def canonical_reference(reference: str, context: _Context, default_type: str = "Patient") -> str:
    """One key per resource, whatever form the reference takes (see the module docstring)."""
    reference = reference.strip()
    if reference in context.full_urls:
        kind, resource_id = context.full_urls[reference]
        return f"{kind}/{resource_id}"
    if reference.startswith(("urn:uuid:", "urn:oid:")):
        return f"{default_type}/{_last_segment(reference)}"
    parts = [part for part in reference.split("/") if part]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return f"{parts[-2]}/{parts[-1]}"
    return reference


def _identifier_key(system: str, value: str, context: _Context) -> str:
    if (system, value) in context.identifiers:
        return context.identifiers[(system, value)]
    digest = hashlib.sha256(f"{system}|{value}".encode()).hexdigest()[:20]
    return f"identifier:{digest}"


def _subject_key(subject: Any, context: _Context) -> str:
    """The canonical group key of a note's subject (raw JSON), or "" when it names none."""
    if not isinstance(subject, dict):
        return ""
    default_type = _text(subject.get("type")) or "Patient"
    reference = _text(subject.get("reference"))
    if reference and not reference.startswith("#"):
        return canonical_reference(reference, context, default_type)
    identifier = subject.get("identifier")
    if isinstance(identifier, dict) and _text(identifier.get("value")):
        return _identifier_key(_text(identifier.get("system")), _text(identifier.get("value")), context)
    return ""


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


def _raw_attachments(resource: Mapping[str, Any]) -> list[Any]:
    if resource.get("resourceType") == "DiagnosticReport":
        forms = resource.get("presentedForm")
        return forms if isinstance(forms, list) else []
    contents = resource.get("content")
    return (
        [c.get("attachment") for c in contents if isinstance(c, dict)] if isinstance(contents, list) else []
    )


def _inline_sizes_ok(resource: Mapping[str, Any], max_note_bytes: int) -> bool:
    """Whether every inline attachment would decode to at most `max_note_bytes`, checked before
    validation decodes any of them."""
    for attachment in _raw_attachments(resource):
        data = attachment.get("data") if isinstance(attachment, dict) else None
        if isinstance(data, str) and len(data) // 4 * 3 > max_note_bytes + 3:
            return False
    return True


def _attachments(resource: DocumentReference | DiagnosticReport) -> list[Any]:
    if isinstance(resource, DiagnosticReport):
        return list(resource.presentedForm or [])
    return [content.attachment for content in resource.content or []]


def _document_text(
    resource: DocumentReference | DiagnosticReport, config: FhirConfig, reject: Any
) -> str | Reject:
    by_url = False
    unsupported = ""
    for attachment in _attachments(resource):
        mime, charset = _media_type(attachment.contentType)
        if mime not in (None, "text/plain"):
            unsupported = mime
            continue
        if attachment.data is not None:
            try:
                return attachment.data.decode(charset, errors="strict")
            except UnicodeDecodeError:
                return reject(records.UNREADABLE_ENCODING)
            except LookupError:
                return reject(records.UNREADABLE_ENCODING, "unknown charset in contentType")
        by_url = by_url or bool(attachment.url)
    if config.narrative_fallback and resource.text is not None and resource.text.div:
        return _narrative_text(resource.text.div)
    if by_url:
        return reject(records.ATTACHMENT_BY_URL)
    if unsupported:
        return reject(records.UNSUPPORTED_ATTACHMENT, unsupported)
    field = "presentedForm.data" if isinstance(resource, DiagnosticReport) else "content.attachment.data"
    return reject(records.MISSING_FIELD, field)


def _concept_value(concept: Any, system: str, field: str) -> list[str]:
    """The values of a CodeableConcept's codings (of `system` when given), else its text."""
    if concept is None:
        return []
    values = []
    for coding in concept.coding or []:
        if system and coding.system != system:
            continue
        value = coding.code if field == "code" else (coding.display or coding.code)
        if value and value.strip():
            values.append(value.strip())
    if not values and not system and field == "display" and concept.text and concept.text.strip():
        values.append(concept.text.strip())
    return values


def _labels(resource: DocumentReference | DiagnosticReport, config: FhirConfig) -> tuple[str, ...]:
    if config.label_path == "type":
        concepts = [resource.code if isinstance(resource, DiagnosticReport) else resource.type]
    elif config.label_path == "category":
        concepts = list(resource.category or [])
    else:
        return ()
    values = [
        v for concept in concepts for v in _concept_value(concept, config.label_system, config.label_field)
    ]
    return tuple(dict.fromkeys(values))


def _note_type(resource: DocumentReference | DiagnosticReport) -> tuple[str, str]:
    """(note type, type code) from the type's first coding (display, else code), else its text."""
    concept = resource.code if isinstance(resource, DiagnosticReport) else resource.type
    if concept is None:
        return "", ""
    coding = concept.coding[0] if concept.coding else None
    code = (coding.code or "") if coding else ""
    display = (coding.display or "") if coding else ""
    return display or code or concept.text or "", code


def _note(
    resource: Mapping[str, Any],
    locator: str,
    fallback_id: str,
    context: _Context,
    config: FhirConfig,
    max_note_bytes: int,
    container: _Container | None = None,
) -> NoteRecord | Reject:
    """One note resource. `container` gives a contained note its id and, when it names no subject of
    its own, its container's subject."""
    kind = resource["resourceType"]

    def reject(reason: str, detail: str = "") -> Reject:
        return Reject(locator, reason, detail, record_type=kind)

    if not _inline_sizes_ok(resource, max_note_bytes):
        return reject(records.OVERSIZE)
    try:
        parsed = _NOTE_TYPES[kind].model_validate(resource)
    except pydantic.ValidationError as error:
        return reject(records.INVALID_FHIR_RESOURCE, _validation_detail(error))
    except Exception as error:
        # fhir.resources raises plain errors on some inputs (a KeyError for an unknown contained
        # resource type); untrusted input must not stop the run.
        return reject(records.INVALID_FHIR_RESOURCE, f"validation failed ({type(error).__name__})")
    note_id = f"{container.owner_id}#{parsed.id}" if container and container.owner_id and parsed.id else ""
    note_id = note_id or (parsed.id if container is None else "") or fallback_id
    if not note_id:
        return reject(records.MISSING_FIELD, "id (and no fullUrl)")
    text = _document_text(parsed, config, reject)
    if isinstance(text, Reject):
        return text
    if problem := records.text_problem(text, max_note_bytes):
        return reject(problem)
    note_type, type_code = _note_type(parsed)
    metadata = {
        "note_type": note_type,
        "type_code": type_code,
        "source_format": "fhir",
        "resource_type": kind,
    }
    return NoteRecord(
        note_id=note_id,
        group_id=_subject_key(resource.get("subject"), context)
        or (_subject_key(container.subject, context) if container else "")
        or note_id,
        text=text,
        labels=_labels(parsed, config),
        metadata={key: value for key, value in metadata.items() if value},
        locator=locator,
    )


@dataclasses.dataclass(frozen=True)
class _Container:
    """The resource that holds a contained note: its id (or fullUrl id) and its subject."""

    owner_id: str
    subject: Any


class _Walker:
    """Walks the JSON of one file, yielding notes and rejects and counting what is not a note."""

    def __init__(self, config: FhirConfig, max_note_bytes: int) -> None:
        self.config = config
        self.max_note_bytes = max_note_bytes
        self.skipped: Counter[str] = Counter()

    def document(self, value: Any, locator: str, separator: str) -> Iterator[NoteRecord | Reject]:
        """A whole JSON document: one resource, or a top-level array of resources."""
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from self.resource(item, f"{locator}{separator}item {index}", " ", "", _Context(), 0)
        else:
            yield from self.resource(value, locator, separator, "", _Context(), 0)

    def resource(
        self, value: Any, locator: str, separator: str, full_url: str, context: _Context, depth: int
    ) -> Iterator[NoteRecord | Reject]:
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            yield Reject(locator, records.INVALID_FHIR_RESOURCE, "not a FHIR resource (no resourceType)")
            return
        kind = value["resourceType"]
        if kind == "Bundle":
            yield from self.bundle(value, locator, separator, context, depth)
            return
        if kind in _NOTE_TYPES and self._is_note(value):
            fallback = _last_segment(full_url) if full_url else ""
            yield _note(value, locator, fallback, context, self.config, self.max_note_bytes)
        else:
            self.skipped[kind] += 1
        contained = value.get("contained")
        for index, inner in enumerate(contained if isinstance(contained, list) else []):
            if isinstance(inner, dict) and inner.get("resourceType") in _NOTE_TYPES and self._is_note(inner):
                owner = _text(value.get("id")) or (_last_segment(full_url) if full_url else "")
                where = f"{locator} contained {index}"
                holder = _Container(owner, value.get("subject"))
                yield _note(inner, where, "", context, self.config, self.max_note_bytes, holder)

    def _is_note(self, resource: Mapping[str, Any]) -> bool:
        """DocumentReferences always; DiagnosticReports when they carry a presentedForm."""
        if resource["resourceType"] == "DocumentReference":
            return True
        return self.config.diagnostic_reports and bool(resource.get("presentedForm"))

    def bundle(
        self, bundle: Mapping[str, Any], locator: str, separator: str, context: _Context, depth: int
    ) -> Iterator[NoteRecord | Reject]:
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            yield Reject(locator, records.INVALID_FHIR_RESOURCE, "Bundle.entry is not a list", "Bundle")
            return
        if depth >= _MAX_BUNDLE_DEPTH:
            yield Reject(locator, records.INVALID_FHIR_RESOURCE, "Bundles nested too deep", "Bundle")
            return
        context = context.extended(entries)
        for index, entry in enumerate(entries):
            where = f"{locator}{separator}entry {index}"
            if not isinstance(entry, dict):
                yield Reject(where, records.INVALID_FHIR_RESOURCE, "Bundle entry is not an object")
            elif "resource" not in entry:
                # A transaction-response or batch-response entry: a status, no resource.
                self.skipped["(entry without resource)"] += 1
            else:
                full_url = _text(entry.get("fullUrl"))
                yield from self.resource(entry["resource"], where, " ", full_url, context, depth + 1)


def _parse(data: bytes, locator: str) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"), strict=False)
    except UnicodeDecodeError:
        return Reject(locator, records.UNREADABLE_ENCODING)
    except (ValueError, RecursionError):
        return Reject(locator, records.MALFORMED_JSON)


def read_fhir(
    path: str, name: str, config: FhirConfig, max_note_bytes: int
) -> Iterator[NoteRecord | Reject | Skipped]:
    """Reads a `.ndjson` (one resource per line) or `.json` (one resource or an array) file, either
    optionally gzipped; ends with one `Skipped` per resource type that was not a note.

    Locators: `file`, `file:entry N`, `file:item I entry N` for `.json`; `file:line L` and
    `file:line L entry N` for `.ndjson`; ` contained K` after a contained note. N counts Bundle entries
    from 0, as FHIRPath's `Bundle.entry[N]` does; nested Bundles add their own `entry N`.
    """
    walker = _Walker(config, max_note_bytes)
    if name.endswith((".ndjson", ".ndjson.gz")):
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
                        yield from walker.document(parsed, locator, " ")
    else:
        cap = _JSON_FILE_FACTOR * max_note_bytes
        with open_binary(path) as stream:
            data = stream.read(cap + 1)
        if len(data) > cap:
            yield Reject(name, records.OVERSIZE)
            return
        parsed = _parse(data, name)
        if isinstance(parsed, Reject):
            yield parsed
        else:
            yield from walker.document(parsed, name, ":")
    for kind, count in sorted(walker.skipped.items()):
        yield Skipped(name, kind, count)
