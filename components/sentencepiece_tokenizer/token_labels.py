"""Token-classification labels: annotated character spans -> one BIO label per SentencePiece piece,
in graph, and entity-level scores from BIO label sequences.

Label ids for `types` entity types: 0 is O; type t is B = 1 + 2t, I = 2 + 2t (the order of
`albert_keras.bio_labels(types)`). Spans and piece offsets are byte offsets into the UTF-8 text, as
`SentencepieceTokenizer.tokenize_with_offsets` gives them.

A piece belongs to the first span it overlaps (shares at least one byte with). The first piece of a span
is B, the next ones I. A piece that is only the word-boundary mark before a span shares no byte with it,
so it stays O.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from components.sentencepiece_tokenizer.tokenize_graph import constant_column

OUTSIDE = 0


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


def entity_spans(labels: np.ndarray | list[int]) -> set[tuple[int, int, int]]:
    """(first position, end position, type) of each entity in one BIO id sequence, read as conlleval
    (the CoNLL-2000 script) reads it.

    An entity starts at B-t, or at an I-t whose previous position is not of type t (O, another type,
    or the start), and runs over the I-t that follow; O, a B of any type and another type end it.
    Negative ids ([CLS], [SEP] and padding, as the PHI tagger passes them) end an entity and belong to
    none; `entity_scores` removes the unscored positions before reading, so there they never occur.
    """
    spans = set()
    start, kind = None, None
    for position, label in enumerate([*list(labels), OUTSIDE]):
        label = int(label)
        label_kind = (label - 1) // 2 if label > 0 else None
        continues = label > 0 and label % 2 == 0 and label_kind == kind and start is not None
        if start is not None and not continues:
            spans.add((start, position, kind))
            start, kind = None, None
        if label > 0 and not continues:
            start, kind = position, label_kind
    return spans


def entity_scores(gold: list, predicted: list) -> dict[str, Any]:
    """Entity-level precision, recall and F1 (exact type and boundaries), micro over all sequences and
    per type, with the counts they come from.

    `gold` and `predicted` are parallel lists of BIO id sequences. Positions where gold is negative
    (-100: the pieces of a word after its first, special tokens, padding) are removed from both before
    entities are read, so an entity is a run of words: an unscored piece inside a word does not break
    it, and entity positions index the remaining (word) sequence.

    Returns precision, recall, f1, true_positives, gold, predicted, and `by_type`:
    {type id: the same six} for every type that occurs in the gold or the predicted entities.
    """
    counts: dict[int, list[int]] = {}  # type -> [true positives, gold, predicted]
    for gold_row, predicted_row in zip(gold, predicted, strict=True):
        gold_row = np.asarray(gold_row)
        scored = gold_row >= 0
        gold_spans = entity_spans(gold_row[scored])
        predicted_spans = entity_spans(np.asarray(predicted_row)[: len(gold_row)][scored])
        for column, spans in enumerate((gold_spans & predicted_spans, gold_spans, predicted_spans)):
            for _, _, kind in spans:
                counts.setdefault(kind, [0, 0, 0])[column] += 1
    totals = [sum(row[column] for row in counts.values()) for column in range(3)]
    by_type = {kind: _scores(*counts[kind]) for kind in sorted(counts)}
    return {**_scores(*totals), "by_type": by_type}


def _scores(true_positives: int, gold: int, predicted: int) -> dict[str, float]:
    return {
        **precision_recall_f1(true_positives, gold, predicted),
        "true_positives": true_positives,
        "gold": gold,
        "predicted": predicted,
    }


def precision_recall_f1(true_positives: float, gold: float, predicted: float) -> dict[str, float]:
    """Precision, recall and F1 from counts; 0 where a ratio is undefined."""
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


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
