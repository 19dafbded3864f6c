"""The tf.train.Example written for each note: the contract with StatisticsGen, Transform and Trainer."""

from __future__ import annotations

import tensorflow as tf

from components.clinical_example_gen.records import ProcessedNote

NOTE_ID = "note_id"
GROUP_ID = "group_id"
TEXT = "text"
# A text pair's second text (a question's passage), only for pairs: single-text notes have no such key.
TEXT_B = "text_b"
SENTENCES = "sentences"
LABELS = "labels"
NOTE_TYPE = "note_type"
NUM_CHARS = "num_chars"
NUM_SENTENCES = "num_sentences"
# Entity spans (token classification), only for sources that annotate them: UTF-8 byte offsets into
# `text` (end exclusive), as the in-graph tokenizer's piece offsets count, and the entity types.
SPAN_STARTS = "span_starts"
SPAN_ENDS = "span_ends"
SPAN_TYPES = "span_types"


def _bytes(*values: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8") for value in values]))


def _int(*values: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def to_example(note: ProcessedNote) -> tf.train.Example:
    """The note as a tf.train.Example; `labels` may be an empty list, `note_type` an empty string.
    `num_chars` and `sentences` are the first text's; a pair adds its second text as `text_b`."""
    features = {
        NOTE_ID: _bytes(note.note_id),
        GROUP_ID: _bytes(note.group_id),
        TEXT: _bytes(note.text),
        SENTENCES: _bytes(*note.sentences),
        LABELS: _bytes(*note.labels),
        NOTE_TYPE: _bytes(note.note_type),
        NUM_CHARS: _int(len(note.text)),
        NUM_SENTENCES: _int(len(note.sentences)),
    }
    if note.text_b is not None:
        features[TEXT_B] = _bytes(note.text_b)
    if note.spans is not None:
        # Byte offset of every character boundary the spans name.
        offsets = {0: 0}
        position = 0
        for index, char in enumerate(note.text):
            position += len(char.encode("utf-8", errors="surrogatepass"))
            offsets[index + 1] = position
        features[SPAN_STARTS] = _int(*(offsets[span.start] for span in note.spans))
        features[SPAN_ENDS] = _int(*(offsets[span.end] for span in note.spans))
        features[SPAN_TYPES] = _bytes(*(span.type for span in note.spans))
    return tf.train.Example(features=tf.train.Features(feature=features))
