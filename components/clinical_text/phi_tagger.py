"""A learned PHI tagger for the scrubber: the pipeline's token-classification export, run over a note.

`TokenTagger` loads a SavedModel that the token-classification task exported (a version folder the
Pusher wrote) and implements `scrub.PhiTagger`: it calls `serving_default` on the text and turns the
per-piece BIO labels into character spans of the text, each with a scrubber kind. Trained on an
i2b2/n2c2 2014 corpus (format "i2b2", `pipeline/i2b2_deid_tokens.json`), its entity types are i2b2's.

Choices, and why:
- BIO: an entity starts at B-T, or at an I-T that does not continue an entity of type T, and runs
  over the I-T that follow; O, another type, and [CLS], [SEP] and padding (offset -1) end it. It is the
  lenient reading `token_labels.entity_spans` gives the Evaluator's scores, and for de-identification
  the one that loses nothing: an I-T after O is still the model saying "identifier".
- Offsets: the export's piece offsets are UTF-8 bytes of the text it was sent (it tokenizes the
  request itself), so bytes map to characters of the window directly.
- Words: a span is trimmed of whitespace, then widened to whole words (runs of letters and digits),
  so that a word the model labelled only in part (`123456` of `AB123456`) goes entirely.
- Windows: the model sees at most `seq - 2` pieces. A text is cut into windows of `window_chars`
  characters (by default 3 per piece the model holds), ending after a line break, else after a space,
  in each window's second half. Each window but the first starts a quarter of the one before from its
  end (at a word's start), so that a name cut at a window's end is seen whole in the next. A window
  whose pieces did not all fit is fed again the same way, from a quarter of what the model read before
  where it stopped, so no part of a long note is left untagged; a window that a windowed model refuses
  as longer than its cap is fed again in two halves. The windows of a text go to the model in batches
  of `batch_size`; overlapping findings of one kind are merged.
- Kinds (`I2B2_KINDS`, overridable with `kinds`): names, dates, phone and fax numbers, e-mail, URLs
  and IP addresses, record and other id numbers, hospitals (and their departments and rooms), and
  places smaller than a state are replaced. What HIPAA Safe Harbor lets stay is kept in the text, as
  the rules keep it: states, countries and professions (kind None), and ages under 90 (an AGE span
  is replaced when it holds a number of 90 or more, "ninety" or "hundred", or no number at all; pass
  `all_ages=True` to replace every age). A type with no entry becomes `[PHI]` (kind "other").
Nothing here logs or raises with note text.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from components.clinical_text.scrub import KIND_TOKENS, OTHER_KIND
from components.sentencepiece_tokenizer.token_labels import OUTSIDE, entity_spans

#: The id of a position that belongs to no entity and ends one, as `entity_spans` reads it.
IGNORED = -1

#: The i2b2/n2c2 2014 TYPE names (and, for `use_category` corpora, the category names) -> scrubber
#: kinds. None: not an identifier under Safe Harbor, so the text stays.
I2B2_KINDS: dict[str, str | None] = {
    # NAME
    "PATIENT": "name", "DOCTOR": "name", "USERNAME": "name", "NAME": "name",
    "PROFESSION": None,
    # LOCATION: organizations too, as normalize.py files MIMIC's companies and universities.
    "HOSPITAL": "hospital", "DEPARTMENT": "hospital", "ROOM": "hospital",
    "ORGANIZATION": "location", "STREET": "location", "CITY": "location", "ZIP": "location",
    "LOCATION-OTHER": "location", "LOCATION": "location",
    "STATE": None, "COUNTRY": None,
    # AGE and DATE
    "AGE": "age", "DATE": "date",
    # CONTACT
    "PHONE": "phone", "FAX": "phone", "EMAIL": "email", "URL": "url", "IPADDR": "url", "CONTACT": "contact",
    # ID
    "SSN": "ssn", "MEDICALRECORD": "mrn", "HEALTHPLAN": "id", "ACCOUNT": "id", "LICENSE": "id",
    "VEHICLE": "id", "DEVICE": "id", "BIOID": "id", "IDNUM": "id", "ID": "id",
}  # fmt: skip

#: The outputs of the token-classification export's serving_default that the tagger reads.
OUTPUTS = ("label_ids", "piece_starts", "piece_ends", "label_names")
#: Characters per window for each piece the model holds: clinical text runs at 4 to 5 characters a
#: piece, so a window rarely needs feeding again.
CHARS_PER_PIECE = 3

_NUMBER = re.compile(r"\d+")
_OVER_89_WORDS = re.compile(r"(?i)ninet|hundred")
_UNDER_90_WORDS = re.compile(
    r"(?i)\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fourty|fifty|sixty|seventy|eighty)"
)


def check_export_dir(export_dir: str) -> None:
    """Raises FileNotFoundError unless `export_dir` holds a SavedModel (its saved_model.pb)."""
    if not export_dir or not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"de-identification tagger export not found: {export_dir!r} holds no saved_model.pb; give "
            "the folder of one pushed version of a token-classification model (SERVING_DIR/VERSION)"
        )


def age_is_phi(value: str) -> bool:
    """Whether an age span is an identifier under Safe Harbor (over 89), or cannot be told from one."""
    numbers = [int(number) for number in _NUMBER.findall(value)]
    if numbers:
        return max(numbers) >= 90
    return bool(_OVER_89_WORDS.search(value)) or not _UNDER_90_WORDS.search(value)


def bio_entities(
    labels: Sequence[str], starts: Sequence[int], ends: Sequence[int]
) -> list[tuple[int, int, str]]:
    """(start, end, type) of each entity in one row of per-position BIO label names and piece offsets,
    in text order, read as the Evaluator reads them (`token_labels.entity_spans`).

    Positions with a negative start ([CLS], [SEP], padding) belong to no entity and end one.
    """
    types = list(dict.fromkeys(label[2:] for label in labels if label[:2] in ("B-", "I-")))
    index = {kind: number for number, kind in enumerate(types)}
    ids = []  # `token_labels`' layout: O, then B and I of each type in turn
    for label, start in zip(labels, starts, strict=True):
        if start < 0:
            ids.append(IGNORED)
        elif label[:2] in ("B-", "I-"):
            ids.append(1 + 2 * index[label[2:]] + (label[0] == "I"))
        else:
            ids.append(OUTSIDE)
    return [
        (int(starts[first]), int(ends[last - 1]), types[kind])
        for first, last, kind in sorted(entity_spans(ids))
    ]


def _char_of_byte(text: str) -> np.ndarray:
    """For each UTF-8 byte of `text`, the index of its character; then one entry for the end."""
    if text.isascii():
        return np.arange(len(text) + 1)
    widths = [len(char.encode("utf-8")) for char in text]
    return np.append(np.repeat(np.arange(len(text)), widths), len(text))


def _cut(text: str, start: int, stop: int) -> int:
    """Where a window from `start` that may reach `stop` ends: after the last line break in its second
    half, else after the last whitespace there, else at `stop` (a word longer than half a window)."""
    if text[stop].isspace():
        return stop
    half = start + (stop - start) // 2
    newline = text.rfind("\n", half, stop)
    if newline >= 0:
        return newline + 1
    for position in range(stop - 1, half - 1, -1):
        if text[position].isspace():
            return position + 1
    return stop


def _halves(text: str, start: int, stop: int) -> list[tuple[int, int]]:
    """[start, stop) in two windows that meet at a word boundary near its middle (one, unchanged,
    when it is a single character; an error for a window the model refuses at any size)."""
    if stop - start < 2:
        raise ValueError("the tagger's model refuses a one-character window")
    middle = _cut(text, start, start + (stop - start) // 2)
    middle = min(max(middle, start + 1), stop - 1)
    return [(start, middle), (middle, stop)]


def _restart(text: str, start: int, stop: int) -> int:
    """Where the window after one over [start, stop) begins: a quarter of it before `stop`, at the start
    of a word when one starts between, and after `start`."""
    restart = max(start + 1, stop - (stop - start) // 4)
    word = restart
    while word > start + 1 and not text[word - 1].isspace():
        word -= 1
    return word if text[word - 1].isspace() else restart


def strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) without whitespace at its edges (empty, start == end, if it held only whitespace)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _word_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """[start, end) without whitespace at its edges, widened to whole words; None if only whitespace."""
    start, end = strip_span(text, start, end)
    if start == end:
        return None
    while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
        end += 1
    return start, end


class TokenTagger:
    """A token-classification export as a `scrub.PhiTagger`; see the module docstring.

    Args:
    export_dir: a SavedModel folder of the token-classification task (one pushed version).
    kinds: entity type -> scrubber kind (a `KIND_TOKENS` key, "other" for `[PHI]`, or None to keep the
        text), over `I2B2_KINDS`; types are matched in upper case.
    batch_size: windows per call of the model.
    window_chars: characters per window; default CHARS_PER_PIECE for each piece the model holds.
    all_ages: replace every age the model finds, not only those over 89.
    """

    def __init__(
        self,
        export_dir: str,
        kinds: Mapping[str, str | None] | None = None,
        batch_size: int = 16,
        window_chars: int | None = None,
        all_ages: bool = False,
    ) -> None:
        check_export_dir(export_dir)
        allowed = {*KIND_TOKENS, OTHER_KIND, None}
        wrong = sorted(f"{name}={kind!r}" for name, kind in (kinds or {}).items() if kind not in allowed)
        if wrong:
            raise ValueError(f"tagger kinds must be one of {sorted(KIND_TOKENS)}, other or null; got {wrong}")
        if batch_size < 1 or (window_chars is not None and window_chars < 1):
            raise ValueError(
                f"batch_size and window_chars must be positive, got {batch_size}, {window_chars}"
            )
        self._model = tf.saved_model.load(export_dir)
        self._serve = self._model.signatures.get("serving_default")
        outputs = set(self._serve.structured_outputs) if self._serve is not None else set()
        missing = [name for name in OUTPUTS if name not in outputs]
        if missing:
            raise ValueError(
                f"{export_dir} is not a token-classification export: serving_default lacks {missing}"
            )
        probe = self._serve(text=tf.constant(["."]))
        names = probe["label_names"].numpy()
        self.label_names = [name.decode("utf-8") for name in (names[0] if names.ndim == 2 else names)]
        not_bio = [name for name in self.label_names if name != "O" and name[:2] not in ("B-", "I-")]
        if not_bio:
            raise ValueError(f"{export_dir} labels are not BIO names: {not_bio}")
        self.seq_length = int(probe["piece_starts"].shape[1])
        self.kinds = {**I2B2_KINDS, **{name.upper(): kind for name, kind in (kinds or {}).items()}}
        self.batch_size = batch_size
        self.window_chars = window_chars or CHARS_PER_PIECE * max(self.seq_length - 2, 1)
        self.all_ages = all_ages
        #: windows run, windows fed again (not all pieces fitted), windows halved (a windowed model
        #: refused them as past its cap), and entities left in the text by kind None or age.
        self.counts: Counter[str] = Counter()

    def tag(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, kind) spans of `text`, character offsets, in no particular order."""
        found: list[tuple[int, int, str]] = []
        pending = self._windows(text, 0, len(text))
        while pending:
            again: list[tuple[int, int]] = []
            for offset in range(0, len(pending), self.batch_size):
                batch = pending[offset : offset + self.batch_size]
                try:
                    outputs = self._serve(text=tf.constant([text[start:end] for start, end in batch]))
                except tf.errors.InvalidArgumentError:
                    # A window past a windowed model's cap of pieces: fed again in halves.
                    again += [half for window in batch for half in _halves(text, *window)]
                    self.counts["windows halved"] += len(batch)
                    continue
                outputs = {name: outputs[name].numpy() for name in OUTPUTS}
                for row, (start, end) in enumerate(batch):
                    spans, seen = self._decode(text[start:end], {k: v[row] for k, v in outputs.items()})
                    found += [(start + first, start + last, kind) for first, last, kind in spans]
                    if seen is not None:
                        again += self._windows(text, _restart(text, start, start + seen), end)
                        self.counts["windows fed again"] += 1
            self.counts["windows"] += len(pending)
            pending = again
        return self._kinds(text, found)

    def _windows(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """[start, end) of `text` in overlapping windows without whitespace at their edges."""
        windows: list[tuple[int, int]] = []
        while start < end:
            while start < end and text[start].isspace():
                start += 1
            if start == end:
                break
            stop = end if end - start <= self.window_chars else _cut(text, start, start + self.window_chars)
            last = stop
            while text[last - 1].isspace():
                last -= 1
            windows.append((start, last))
            start = stop if stop == end else _restart(text, start, stop)
        return windows

    def _decode(
        self, window: str, row: dict[str, np.ndarray]
    ) -> tuple[list[tuple[int, int, str]], int | None]:
        """Entity spans of one window (its character offsets), and where the model stopped reading it
        (a character offset) when not all its pieces fitted, else None."""
        starts, ends = row["piece_starts"], row["piece_ends"]
        labels = [self.label_names[index] for index in row["label_ids"]]
        char_of_byte = _char_of_byte(window)

        def to_window(byte_start: int, byte_end: int) -> tuple[int, int]:
            return int(char_of_byte[byte_start]), int(char_of_byte[byte_end - 1]) + 1

        spans = [(*to_window(start, end), kind) for start, end, kind in bio_entities(labels, starts, ends)]
        pieces = starts >= 0
        if int(pieces.sum()) < self.seq_length - 2:
            return spans, None
        read = int(ends[pieces].max())  # bytes
        return spans, None if read >= len(char_of_byte) - 1 else to_window(0, read)[1]

    def _kinds(self, text: str, found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        """The spans widened to words, with scrubber kinds (overlapping ones of a kind merged); those
        Safe Harbor lets stay are left out."""
        result: list[tuple[int, int, str]] = []
        for start, end, entity_type in found:
            span = _word_span(text, start, end)
            if span is None:
                continue
            kind = self.kinds.get(entity_type.upper(), OTHER_KIND)
            young = kind == "age" and not self.all_ages and not age_is_phi(text[span[0] : span[1]])
            if kind is None or young:
                self.counts[f"kept {entity_type}"] += 1
                continue
            result.append((*span, kind))
        merged: list[tuple[int, int, str]] = []
        for kind in sorted({kind for _, _, kind in result}):
            for start, end in sorted((start, end) for start, end, other in result if other == kind):
                if merged and merged[-1][2] == kind and start < merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(end, merged[-1][1]), kind)
                else:
                    merged.append((start, end, kind))
        return merged
