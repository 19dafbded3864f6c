"""The text processing every note goes through, in order: normalize, MIMIC placeholders, scrub, segment.

The steps themselves live in `components.clinical_text`, shared with the tokenizer; this module only
composes them and turns "nothing left" into an `empty text` reject. MIMIC's `[**...**]` placeholders are
replaced wherever they occur, not only in MIMIC input, since notes derived from MIMIC travel in other
formats. Replacements are counted per typed token for the ingest report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from components.clinical_example_gen import records
from components.clinical_example_gen.records import NoteRecord, ProcessedNote, Reject
from components.clinical_text import normalize, scrub, segment


class TextStepError(RuntimeError):
    """A processing step failed on a record; names the record, never its text."""


class TextSteps:
    """Processes `NoteRecord`s into `ProcessedNote`s with one scrubber, built once."""

    def __init__(self, scrubber_config: Mapping[str, Any] | None = None) -> None:
        self._scrubber = scrub.Scrubber(scrub.ScrubberConfig.from_dict(dict(scrubber_config or {})))

    def __call__(self, record: NoteRecord) -> ProcessedNote | Reject:
        try:
            return self._process(record)
        except Exception as error:
            # The original message may quote the text (a regex error, a codec error): keep the
            # traceback for debugging, replace the message.
            message = f"text processing failed for {record.locator}: {type(error).__name__}"
            raise TextStepError(message).with_traceback(error.__traceback__) from None

    def _process(self, record: NoteRecord) -> ProcessedNote | Reject:
        counts: Counter[str] = Counter()
        text = normalize.normalize_text(record.text)
        if "[**" in text:
            text, replaced = normalize.replace_mimic_placeholders(text)
            counts.update(replaced)
        scrubbed = self._scrubber.scrub(text)
        counts.update(scrubbed.counts)
        sentences = tuple(segment.segment_sentences(scrubbed.text))
        if not scrubbed.text.strip() or not sentences:
            return Reject(record.locator, records.EMPTY_TEXT)
        return ProcessedNote(
            note_id=record.note_id,
            group_id=record.group_id,
            text=scrubbed.text,
            sentences=sentences,
            labels=record.labels,
            note_type=record.note_type,
            phi_counts=dict(counts),
            locator=record.locator,
        )
