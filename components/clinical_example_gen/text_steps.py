"""The text processing every note goes through, in order: normalize, MIMIC placeholders, scrub, segment.

The steps themselves live in `components.clinical_text`, shared with the tokenizer; this module only
composes them and turns "nothing left" into an `empty text` reject. MIMIC's `[**...**]` placeholders are
replaced wherever they occur, not only in MIMIC input, since notes derived from MIMIC travel in other
formats. Replacements are counted per typed token for the ingest report.

A pair's second text (`NoteRecord.text_b`, a question's passage) is normalized, placeholder-replaced
and scrubbed like the first, its replacements counted with the note's; it is not segmented, so the
pretraining sentences are those of the first text only, and it carries no spans. A pair whose second
text comes out empty is rejected as `empty text` (detail `text_b`).

Entity spans (token classification) ride through the steps as two private-use characters around each
mention, so that every change of length before or inside a mention moves its span with it; after
scrubbing the marks are taken out and the spans read off (a learned tagger's findings are split around
any mark they cover, so that they cannot remove one). A note whose marks do not come out in pairs
(a step removed one), or whose mention came out empty, is rejected as `bad entity spans`, never kept
with spans that point at the wrong text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from components.clinical_example_gen import records
from components.clinical_example_gen.records import NoteRecord, ProcessedNote, Reject, Span
from components.clinical_text import normalize, phi_tagger, scrub, segment

SPAN_OPEN, SPAN_CLOSE = "\ue000", "\ue001"


def mark_spans(text: str, spans: tuple[Span, ...]) -> str:
    """`text` with SPAN_OPEN before and SPAN_CLOSE after each span (ordered, not overlapping)."""
    parts, position = [], 0
    for span in spans:
        parts += [text[position : span.start], SPAN_OPEN, text[span.start : span.end], SPAN_CLOSE]
        position = span.end
    parts.append(text[position:])
    return "".join(parts)


def unmark_spans(marked: str, types: list[str]) -> tuple[str, tuple[Span, ...]] | str:
    """The text without the marks, and the spans they enclosed; or what went wrong."""
    text, spans, opened = [], [], None
    length = 0
    for char in marked:
        if char == SPAN_OPEN:
            if opened is not None:
                return "a span mark was lost in text processing"
            opened = length
        elif char == SPAN_CLOSE:
            if opened is None or len(spans) >= len(types):
                return "a span mark was lost in text processing"
            spans.append((opened, length))
            opened = None
        else:
            text.append(char)
            length += 1
    if opened is not None or len(spans) != len(types):
        return "a span mark was lost in text processing"
    joined = "".join(text)
    result = []
    for (start, end), kind in zip(spans, types, strict=True):
        # Whitespace that normalization left at a mention's edges is not part of it.
        while start < end and joined[start].isspace():
            start += 1
        while end > start and joined[end - 1].isspace():
            end -= 1
        if start == end:
            return "a mention became empty in text processing"
        result.append(Span(start, end, kind))
    return joined, tuple(result)


class _MarksStay:
    """A tagger whose spans never take in a span mark: a span is split around any mark inside it (and
    the parts trimmed of whitespace), so that replacing it cannot remove a mark and lose the note's
    entity spans."""

    def __init__(self, tagger: scrub.PhiTagger) -> None:
        self._tagger = tagger

    def tag(self, text: str) -> Iterator[tuple[int, int, str]]:
        for start, end, kind in self._tagger.tag(text):
            part = start
            for position in range(start, end + 1):
                if position == end or text[position] in (SPAN_OPEN, SPAN_CLOSE):
                    first, last = phi_tagger.strip_span(text, part, position)
                    if last > first:
                        yield first, last, kind
                    part = position + 1


def taggers(config: scrub.ScrubberConfig) -> list[scrub.PhiTagger]:
    """The learned taggers `config` names (`tagger_export_dir`), loaded."""
    if not config.tagger_export_dir:
        return []
    tagger = phi_tagger.TokenTagger(config.tagger_export_dir, kinds=dict(config.tagger_kinds))
    return [_MarksStay(tagger)]


class TextStepError(RuntimeError):
    """A processing step failed on a record; names the record, never its text."""


class TextSteps:
    """Processes `NoteRecord`s into `ProcessedNote`s with one scrubber, built once, with the tagger that
    `scrubber_config` may name (the executor builds the steps in its DoFn's setup, not per record)."""

    def __init__(self, scrubber_config: Mapping[str, Any] | None = None) -> None:
        config = scrub.ScrubberConfig.from_dict(dict(scrubber_config or {}))
        self._scrubber = scrub.Scrubber(config, taggers=taggers(config))

    def __call__(self, record: NoteRecord) -> ProcessedNote | Reject:
        try:
            return self._process(record)
        except Exception as error:
            # The original message may quote the text (a regex error, a codec error): keep the
            # traceback for debugging, replace the message.
            message = f"text processing failed for {record.locator}: {type(error).__name__}"
            raise TextStepError(message).with_traceback(error.__traceback__) from None

    def _deidentify(self, text: str, patient: str, counts: Counter[str]) -> str:
        """Normalized, placeholders replaced and scrubbed; the replacements are added to `counts`."""
        text = normalize.normalize_text(text)
        if "[**" in text:
            text, replaced = normalize.replace_mimic_placeholders(text)
            counts.update(replaced)
        scrubbed = self._scrubber.scrub(text, patient=patient)
        counts.update(scrubbed.counts)
        return scrubbed.text

    def _process(self, record: NoteRecord) -> ProcessedNote | Reject:
        counts: Counter[str] = Counter()
        text = record.text
        if record.spans is not None:
            if SPAN_OPEN in text or SPAN_CLOSE in text:
                return Reject(record.locator, records.BAD_SPANS, "the text holds U+E000 or U+E001")
            text = mark_spans(text, record.spans)
        text, spans = self._deidentify(text, record.group_id, counts), None
        if record.spans is not None:
            unmarked = unmark_spans(text, [span.type for span in record.spans])
            if isinstance(unmarked, str):
                return Reject(record.locator, records.BAD_SPANS, unmarked)
            text, spans = unmarked
        sentences = tuple(segment.segment_sentences(text))
        if not text.strip() or not sentences:
            return Reject(record.locator, records.EMPTY_TEXT)
        text_b = None
        if record.text_b is not None:
            text_b = self._deidentify(record.text_b, record.group_id, counts)
            if not text_b.strip():
                return Reject(record.locator, records.EMPTY_TEXT, "text_b")
        return ProcessedNote(
            note_id=record.note_id,
            group_id=record.group_id,
            text=text,
            sentences=sentences,
            labels=record.labels,
            note_type=record.note_type,
            phi_counts=dict(counts),
            locator=record.locator,
            spans=spans,
            split=record.split,
            text_b=text_b,
        )
