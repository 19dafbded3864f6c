"""Whole notes as overlapping windows of pieces, in graph: a note longer than one sequence is read in
windows of `budget` pieces (seq_length - 2), each starting `stride` pieces after the one before, up to
`max_windows` windows; so a note of at most `cap(...)` pieces is read whole.

Note tasks read every window and pool the windows' logits into the note's (mean or max); token tasks
take each piece's label from the window whose centre lies nearest to it, the window where it sits
most centrally, so every piece is read with context on both sides where the note has it.

Windows are laid out flat, only those that exist, `[windows, ...]`, a note's in order, with each
window's note and first piece: the model runs on exactly the windows a batch has, so a short note
costs one. Core TensorFlow ops only, as the stock TF Serving model server has them.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """`budget` pieces a window, `stride` pieces between window starts, at most `max_windows`."""

    budget: int
    stride: int
    max_windows: int

    def __post_init__(self) -> None:
        if not 0 < self.stride <= self.budget:
            raise ValueError(f"window stride must be in [1, {self.budget}] pieces, received {self.stride}")
        if self.max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, received {self.max_windows}")

    @property
    def cap(self) -> int:
        """The most pieces a note may have to be read whole."""
        return (self.max_windows - 1) * self.stride + self.budget

    def count(self, pieces: tf.Tensor) -> tf.Tensor:
        """Windows for notes of `pieces` pieces (int64 `[notes]`): one, plus one per `stride` past the
        first window's `budget`; at most max_windows."""
        pieces = tf.cast(pieces, tf.int64)
        extra = tf.maximum(pieces - self.budget, 0)
        return tf.minimum(1 + (extra + self.stride - 1) // self.stride, self.max_windows)


def flat_windows(pieces: tf.RaggedTensor, spec: WindowSpec) -> tuple[tf.RaggedTensor, tf.Tensor, tf.Tensor]:
    """The windows that exist, `[windows, (pieces)]` (each at most `budget`, values from `pieces`), each
    window's note `[windows]` and its first piece's position in the note `[windows]`.

    Pieces past `spec.cap` are in no window.
    """
    lengths = tf.cast(pieces.row_lengths(), tf.int64)
    counts = spec.count(lengths)
    note = tf.repeat(tf.range(tf.size(counts, out_type=tf.int64)), counts)
    first = (
        tf.range(tf.reduce_sum(counts)) - tf.repeat(tf.cumsum(counts, exclusive=True), counts)
    ) * spec.stride
    end = tf.minimum(first + spec.budget, tf.gather(lengths, note))
    offsets = tf.gather(tf.cast(pieces.row_starts(), tf.int64), note)
    indices = tf.ragged.range(offsets + first, offsets + end)
    windows = tf.RaggedTensor.from_row_splits(
        tf.gather(pieces.values, indices.values), tf.cast(indices.row_splits, pieces.row_splits.dtype)
    )
    return windows, note, first


def pool(window_logits: tf.Tensor, note: tf.Tensor, notes: tf.Tensor, how: str) -> tf.Tensor:
    """A note's logits from its windows' `[windows, labels]`: their mean or their maximum."""
    if how == "mean":
        return tf.math.unsorted_segment_mean(window_logits, note, notes)
    if how == "max":
        return tf.math.unsorted_segment_max(window_logits, note, notes)
    raise ValueError(f"window pooling must be mean or max, received {how!r}")


def stitch(piece_values: tf.Tensor, lengths: tf.Tensor, spec: WindowSpec) -> tf.RaggedTensor:
    """Per-piece values of each note, each taken from the window it sits most centrally in.

    `piece_values` is `[windows, budget, ...]` in `flat_windows`' order: position i of a note's window
    k holds the value of the note's piece `k * stride + i`. `lengths` are the notes' pieces `[notes]`;
    pieces past `spec.cap` get none. A piece's window is the one that leaves it the most context on
    its shorter side (the largest distance to the nearer edge; the earlier window on a tie).
    Returns `[notes, (min(length, cap)), ...]`.
    """
    lengths = tf.minimum(tf.cast(lengths, tf.int64), spec.cap)
    counts = spec.count(lengths)
    window_base = tf.cumsum(counts, exclusive=True)  # each note's first window in the flat layout
    piece_note = tf.repeat(tf.range(tf.size(lengths, out_type=tf.int64)), lengths)
    position = tf.range(tf.reduce_sum(lengths)) - tf.repeat(tf.cumsum(lengths, exclusive=True), lengths)
    length, last = tf.gather(lengths, piece_note), tf.gather(counts, piece_note) - 1
    # Windows are evenly spaced, so the best is among a few around the one centred nearest, or the
    # last (which may be short).
    near = (position - (spec.budget - 1) // 2) // spec.stride
    candidates = tf.stack([near - 1, near, near + 1, near + 2, last], axis=1)  # (pieces, 5)
    candidates = tf.clip_by_value(candidates, 0, last[:, None])
    start = candidates * spec.stride
    end = tf.minimum(start + spec.budget, length[:, None])
    p = position[:, None]
    margin = tf.where((start <= p) & (p < end), tf.minimum(p - start, end - 1 - p), -1)
    # argmax takes the first maximum; order the candidates by window so that it is the earliest.
    order = tf.argsort(candidates, axis=1, stable=True)
    margin = tf.gather(margin, order, batch_dims=1)
    k = tf.gather(tf.gather(candidates, order, batch_dims=1), tf.argmax(margin, axis=1), batch_dims=1)
    window = tf.gather(window_base, piece_note) + k
    values = tf.gather_nd(piece_values, tf.stack([window, position - k * spec.stride], axis=1))
    return tf.RaggedTensor.from_row_lengths(values, lengths)
