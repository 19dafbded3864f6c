"""In-graph SentencePiece tokenization and ALBERT input packing, for the Transform graph and so the
served model.

The graph must load in the stock TF Serving 2.16 model server, which has TF core ops plus those of
tensorflow-text 2.12.1. So the only tensorflow-text ops used are `SentencepieceOp` and
`SentencepieceTokenizeOp`; truncation and packing are ragged-tensor arithmetic in core ops (keras-hub's
`MultiSegmentPacker` needs `RoundRobinTrim`, which that server lacks), with the same results.

tensorflow-text 2.16.1 carries its own build of SentencePiece, not the Python package's (0.2.x). They
agree on every note of the shipped sample; on the full MTSamples corpus they differ at 8 of 1.66 million
positions, all where two segmentations score exactly the same ("_" + "___" or "___" + "_"). So the ids
for training should come from this graph (the Transform output), as serving's do.

Packed layout: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, padded to `seq_length`; segment 0 for
`[CLS]`, A and the first `[SEP]`, 1 for B and its `[SEP]`. Outputs are `[batch, seq_length]`, int32
unless asked otherwise.
"""

from __future__ import annotations

import dataclasses

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """The ids packing needs, read from the model so that they cannot drift from it."""

    cls_id: int
    sep_id: int
    pad_id: int

    @classmethod
    def from_model_proto(cls, model_proto: bytes) -> SpecialIds:
        processor = spm.SentencePieceProcessor(model_proto=model_proto)
        ids = {}
        for piece in ("[CLS]", "[SEP]", "<pad>"):
            piece_id = processor.piece_to_id(piece)
            if processor.id_to_piece(piece_id) != piece:
                raise ValueError(f"the SentencePiece model has no {piece!r} piece")
            ids[piece] = piece_id
        return cls(cls_id=ids["[CLS]"], sep_id=ids["[SEP]"], pad_id=ids["<pad>"])


def make_tokenizer(model_proto: bytes) -> tf_text.SentencepieceTokenizer:
    """A tensorflow-text tokenizer that embeds the serialized model in the graph; int32 ids, no BOS/EOS."""
    return tf_text.SentencepieceTokenizer(model=model_proto, out_type=tf.int32)


def tokenize(tokenizer: tf_text.SentencepieceTokenizer, texts: tf.Tensor) -> tf.RaggedTensor:
    """Ids of each text, `[batch, (pieces)]`: the Python library's `encode` of each text."""
    texts = tf.convert_to_tensor(texts, tf.string)
    texts.shape.with_rank(1)
    return tokenizer.tokenize(texts)


def _keep_first(segment: tf.RaggedTensor, counts: tf.Tensor) -> tf.RaggedTensor:
    """The first `counts[i]` ids of each row i (counts never exceed the row lengths)."""
    starts = segment.row_starts()
    indices = tf.ragged.range(starts, starts + tf.cast(counts, starts.dtype))
    return indices.with_values(tf.gather(segment.values, indices.values))


def constant_column(
    value: int, rows: tf.Tensor, like: tf.RaggedTensor, dtype: tf.DType = tf.int32
) -> tf.RaggedTensor:
    """A `[rows, 1]` ragged column of `value`, with `like`'s row-split dtype."""
    return tf.RaggedTensor.from_tensor(
        tf.fill(tf.stack([rows, 1]), tf.constant(value, dtype)), row_splits_dtype=like.row_splits.dtype
    )


def _trim_round_robin(length_a: tf.Tensor, length_b: tf.Tensor, budget: int) -> tuple[tf.Tensor, tf.Tensor]:
    """How many ids of A and of B to keep when taking one from each in turn, A first, up to `budget`.

    Both long: A keeps ceil(budget / 2), B floor(budget / 2); one short: it keeps all, the other the rest.
    """
    budget = tf.constant(budget, length_a.dtype)  # row lengths are int64 in a ragged tensor's graph
    keep_a = tf.minimum(length_a, tf.maximum((budget + 1) // 2, budget - length_b))
    keep_b = tf.minimum(length_b, budget - keep_a)
    return keep_a, keep_b


def pack(
    segment_a: tf.RaggedTensor,
    segment_b: tf.RaggedTensor | None = None,
    *,
    seq_length: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    dtype: tf.DType = tf.int32,
) -> dict[str, tf.Tensor]:
    """Truncates (round robin) and packs one or two ragged id segments into ALBERT's inputs.

    Returns `token_ids`, `segment_ids` and `padding_mask` (1 for real tokens), each `[batch, seq_length]`
    of `dtype`: int32 for the model, int64 in a Transform graph (tf.Example holds no int32).
    """
    segments = [segment_a] if segment_b is None else [segment_a, segment_b]
    for segment in segments:
        if not isinstance(segment, tf.RaggedTensor) or segment.ragged_rank != 1 or segment.shape.rank != 2:
            raise ValueError(f"segments must be 2-D ragged tensors [batch, (ids)], received {segment!r}")
    specials = len(segments) + 1
    if seq_length < specials:
        raise ValueError(
            f"seq_length must be >= {specials} for {len(segments)} segment(s), received {seq_length}"
        )
    budget = seq_length - specials
    segments = [tf.cast(s, tf.int32) for s in segments]
    if segment_b is None:
        kept = [_keep_first(segments[0], tf.minimum(segments[0].row_lengths(), budget))]
    else:
        counts = _trim_round_robin(segments[0].row_lengths(), segments[1].row_lengths(), budget)
        kept = [_keep_first(s, n) for s, n in zip(segments, counts, strict=True)]

    rows = kept[0].nrows()
    token_parts = [constant_column(cls_id, rows, kept[0])]
    segment_parts = [constant_column(0, rows, kept[0])]
    for segment_id, ids in enumerate(kept):
        token_parts += [ids, constant_column(sep_id, rows, ids)]
        same_segment = ids.with_values(tf.fill(tf.shape(ids.values), segment_id))
        segment_parts += [same_segment, constant_column(segment_id, rows, ids)]
    token_ids = tf.concat(token_parts, axis=1)
    segment_ids = tf.concat(segment_parts, axis=1)
    # (batch, seq_length)
    packed = {
        "token_ids": token_ids.to_tensor(default_value=pad_id, shape=[None, seq_length]),
        "segment_ids": segment_ids.to_tensor(default_value=0, shape=[None, seq_length]),
        "padding_mask": tf.sequence_mask(token_ids.row_lengths(), seq_length, dtype=tf.int32),
    }
    return {name: tf.cast(tensor, dtype) for name, tensor in packed.items()}


def tokenize_and_pack(
    notes: tf.Tensor,
    tokenizer: tf_text.SentencepieceTokenizer,
    special_ids: SpecialIds,
    seq_length: int,
    dtype: tf.DType = tf.int32,
) -> dict[str, tf.Tensor]:
    """Single-segment ALBERT inputs from a `[batch]` string tensor of normalized notes.

    For the Transform `preprocessing_fn` (make the tokenizer inside it; pass `dtype=tf.int64`) and for
    serving.
    """
    return pack(
        tokenize(tokenizer, notes),
        seq_length=seq_length,
        cls_id=special_ids.cls_id,
        sep_id=special_ids.sep_id,
        pad_id=special_ids.pad_id,
        dtype=dtype,
    )


class NotePacker(tf.Module):
    """Notes to packed ALBERT inputs as a saveable module: the model travels inside the graph."""

    def __init__(self, model_proto: bytes, seq_length: int, name: str | None = None):
        super().__init__(name=name)
        self.seq_length = seq_length
        self.special_ids = SpecialIds.from_model_proto(model_proto)
        self.tokenizer = make_tokenizer(model_proto)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="notes")])
    def __call__(self, notes: tf.Tensor) -> dict[str, tf.Tensor]:
        return tokenize_and_pack(notes, self.tokenizer, self.special_ids, self.seq_length)
