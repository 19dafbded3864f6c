"""Token-classification labels: annotated character spans -> one BIO label per SentencePiece piece,
in graph. The entity-level scores of BIO id sequences live in `components.scores` (re-exported here).

Label ids for `types` entity types: 0 is O; type t is B = 1 + 2t, I = 2 + 2t (the order of
`albert_keras.bio_labels(types)`). Spans and piece offsets are byte offsets into the UTF-8 text, as
`SentencepieceTokenizer.tokenize_with_offsets` gives them.

A piece belongs to the first span it overlaps (shares at least one byte with). The first piece of a span
is B, the next ones I. A piece that is only the word-boundary mark before a span shares no byte with it,
so it stays O.
"""

from __future__ import annotations

import tensorflow as tf

from components.scores import OUTSIDE, entity_scores, entity_spans, precision_recall_f1
from components.sentencepiece_tokenizer.tokenize_graph import constant_column

__all__ = [
    "OUTSIDE",
    "bio_piece_labels",
    "entity_scores",
    "entity_spans",
    "pack_labels",
    "precision_recall_f1",
]


def bio_piece_labels(
    piece_starts: tf.RaggedTensor,
    piece_ends: tf.RaggedTensor,
    span_starts: tf.RaggedTensor,
    span_ends: tf.RaggedTensor,
    span_types: tf.RaggedTensor,
) -> tf.RaggedTensor:
    """The label id of each piece, `[batch, (pieces)]` int64, from the spans of the same rows."""
    starts = tf.cast(piece_starts.to_tensor(-1), tf.int64)  # (batch, P)
    ends = tf.cast(piece_ends.to_tensor(-1), tf.int64)
    # (batch, S + 1): padding, and one more column so that S is never 0 (serving has no spans), never
    # overlaps a piece.
    never = tf.fill(tf.stack([piece_starts.nrows(), 1]), tf.constant(-1, tf.int64))
    span_start = tf.concat([tf.cast(span_starts.to_tensor(-1), tf.int64), never], axis=1)
    span_end = tf.concat([tf.cast(span_ends.to_tensor(-1), tf.int64), never], axis=1)
    span_type = tf.concat([tf.cast(span_types.to_tensor(0), tf.int64), tf.zeros_like(never)], axis=1)

    overlaps = (starts[:, :, None] < span_end[:, None, :]) & (ends[:, :, None] > span_start[:, None, :])
    inside = tf.reduce_any(overlaps, axis=-1)  # (batch, P)
    which = tf.argmax(tf.cast(overlaps, tf.int32), axis=-1, output_type=tf.int64)  # first span overlapped
    # B where the previous piece is outside or in another span.
    previous_inside = tf.pad(inside[:, :-1], [[0, 0], [1, 0]], constant_values=False)
    previous_which = tf.pad(which[:, :-1], [[0, 0], [1, 0]], constant_values=-1)
    begins = inside & (~previous_inside | tf.not_equal(previous_which, which))
    kind = tf.gather(span_type, which, batch_dims=1)
    labels = tf.where(inside, tf.where(begins, 1 + 2 * kind, 2 + 2 * kind), OUTSIDE)
    return tf.RaggedTensor.from_tensor(labels, lengths=piece_starts.row_lengths())


def pack_labels(piece_labels: tf.RaggedTensor, seq_length: int, ignore_label: int = -100) -> tf.Tensor:
    """Piece labels laid out as `pack` lays out a single segment: `[batch, seq_length]` int64.

    `[CLS]`, `[SEP]` and padding get `ignore_label`; pieces past `seq_length - 2` are cut, as `pack`
    cuts their ids.
    """
    budget = seq_length - 2
    kept = piece_labels[:, :budget]
    edge = constant_column(ignore_label, kept.nrows(), kept, dtype=tf.int64)
    packed = tf.concat([edge, tf.cast(kept, tf.int64), edge], axis=1)
    return packed.to_tensor(default_value=ignore_label, shape=[None, seq_length])
