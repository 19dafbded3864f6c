from __future__ import annotations

import glob
import os

import keras_hub
import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
import tensorflow_text
from tensorflow.core.framework import op_def_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.client import pywrap_tf_session

from components.sentencepiece_tokenizer.tokenize_graph import (
    NotePacker,
    SpecialIds,
    make_tokenizer,
    pack,
    tokenize,
    tokenize_and_pack,
)

CLS, SEP, PAD = 2, 3, 0


def reference_pack(a: list[int], b: list[int] | None, seq_length: int) -> tuple[list[int], list[int]]:
    """Plain Python: take one id from A, then one from B, and so on, until the budget is spent."""
    budget = seq_length - (2 if b is None else 3)
    if b is None:
        kept_a, kept_b = a[:budget], []
    else:
        keep, turn = [0, 0], 0
        while sum(keep) < budget and (keep[0] < len(a) or keep[1] < len(b)):
            if keep[turn] < len((a, b)[turn]):
                keep[turn] += 1
            turn = 1 - turn
        kept_a, kept_b = a[: keep[0]], b[: keep[1]]
    tokens = [CLS, *kept_a, SEP] + ([*kept_b, SEP] if b is not None else [])
    segments = [0] * (len(kept_a) + 2) + ([1] * (len(kept_b) + 1) if b is not None else [])
    padding = seq_length - len(tokens)
    return tokens + [PAD] * padding, segments + [0] * padding


def random_segments(rng: np.random.Generator, max_length: int, batch: int = 64) -> list[list[int]]:
    return [rng.integers(5, 500, rng.integers(0, max_length + 1)).tolist() for _ in range(batch)]


def ragged(rows: list[list[int]]) -> tf.RaggedTensor:
    return tf.ragged.constant(rows, dtype=tf.int32, ragged_rank=1, inner_shape=())


def test_tensorflow_text_ids_equal_python_ids_for_every_sample_note(model_proto, notes):
    tokenizer = make_tokenizer(model_proto)
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    graph_ids = tokenize(tokenizer, tf.constant(notes)).to_list()
    assert len(graph_ids) == len(notes) == 263 + 120
    mismatched = [
        i for i, (note, ids) in enumerate(zip(notes, graph_ids, strict=True)) if processor.encode(note) != ids
    ]
    assert mismatched == []


def test_phi_tokens_and_case_in_graph(model_proto):
    tokenizer = make_tokenizer(model_proto)
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    texts = ["Seen on [DATE] at [HOSPITAL] by [NAME].", "SEEN ON [DATE] AT [HOSPITAL] BY [NAME]."]
    ids = tokenize(tokenizer, tf.constant(texts)).to_list()
    assert ids[0] == ids[1] == processor.encode(texts[0])
    assert {processor.piece_to_id(t) for t in ("[DATE]", "[HOSPITAL]", "[NAME]")} <= set(ids[0])


@pytest.mark.parametrize("seq_length", [3, 4, 5, 8, 11, 16])
def test_pack_matches_python_reference(seq_length):
    rng = np.random.default_rng(seq_length)
    a, b = random_segments(rng, seq_length), random_segments(rng, seq_length)
    for second in (None, b):
        packed = pack(
            ragged(a),
            None if second is None else ragged(second),
            seq_length=seq_length,
            cls_id=CLS,
            sep_id=SEP,
            pad_id=PAD,
        )
        expected = [
            reference_pack(x, None if second is None else y, seq_length) for x, y in zip(a, b, strict=True)
        ]
        np.testing.assert_array_equal(packed["token_ids"], [t for t, _ in expected])
        np.testing.assert_array_equal(packed["segment_ids"], [s for _, s in expected])
        np.testing.assert_array_equal(packed["padding_mask"], np.array([t for t, _ in expected]) != PAD)
        assert all(v.dtype == tf.int32 and v.shape == (64, seq_length) for v in packed.values())


@pytest.mark.parametrize("seq_length", [3, 6, 9, 16])
def test_pack_matches_keras_hub_multi_segment_packer(seq_length):
    rng = np.random.default_rng(100 + seq_length)
    a, b = random_segments(rng, seq_length + 2), random_segments(rng, seq_length + 2)
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=seq_length, start_value=CLS, end_value=SEP, pad_value=PAD, truncate="round_robin"
    )
    for inputs in ((ragged(a),), (ragged(a), ragged(b))):
        token_ids, segment_ids = packer(inputs if len(inputs) > 1 else inputs[0])
        packed = pack(*inputs, seq_length=seq_length, cls_id=CLS, sep_id=SEP, pad_id=PAD)
        np.testing.assert_array_equal(packed["token_ids"], token_ids)
        np.testing.assert_array_equal(packed["segment_ids"], segment_ids)


def test_a_pair_packs_in_a_graph_as_eagerly():
    # The Transform traces `pack` in a graph, where row lengths are int64 tensors.
    a, b = ragged([[5, 6, 7, 8, 9], [5]]), ragged([[10, 11, 12], [10, 11, 12, 13, 14, 15]])
    eager = pack(a, b, seq_length=7, cls_id=CLS, sep_id=SEP, pad_id=PAD)
    traced = tf.function(lambda x, y: pack(x, y, seq_length=7, cls_id=CLS, sep_id=SEP, pad_id=PAD))(a, b)
    for key, value in eager.items():
        np.testing.assert_array_equal(traced[key], value)
    # Four ids to share: the longer side loses more (A keeps 2 of 5, B 2 of 3; then A all 1, B 3 of 6).
    assert traced["token_ids"].numpy().tolist() == [
        [CLS, 5, 6, SEP, 10, 11, SEP],
        [CLS, 5, SEP, 10, 11, 12, SEP],
    ]


def test_pack_rejects_bad_inputs():
    with pytest.raises(ValueError, match="seq_length must be >= 3"):
        pack(ragged([[5]]), ragged([[6]]), seq_length=2, cls_id=CLS, sep_id=SEP, pad_id=PAD)
    with pytest.raises(ValueError, match="2-D ragged"):
        pack(tf.constant([[5, 6]]), seq_length=8, cls_id=CLS, sep_id=SEP, pad_id=PAD)


def test_tokenize_takes_a_batch_of_strings(model_proto):
    with pytest.raises(ValueError):
        tokenize(make_tokenizer(model_proto), tf.constant([["a note"]]))


def test_int64_for_transform(model_proto):
    ids = SpecialIds.from_model_proto(model_proto)
    int32 = tokenize_and_pack(tf.constant(["Chest pain.", ""]), make_tokenizer(model_proto), ids, 8)
    int64 = tokenize_and_pack(tf.constant(["Chest pain.", ""]), make_tokenizer(model_proto), ids, 8, tf.int64)
    for key, value in int64.items():
        assert value.dtype == tf.int64 and int32[key].dtype == tf.int32
        np.testing.assert_array_equal(value, int32[key])


def test_special_ids_come_from_the_model(model_proto):
    assert SpecialIds.from_model_proto(model_proto) == SpecialIds(cls_id=2, sep_id=3, pad_id=0)


def _tensorflow_text_ops() -> set[str]:
    """Names of every op that tensorflow-text's libraries register (read from each library's op list)."""
    ops_dir = os.path.join(os.path.dirname(tensorflow_text.__file__), "python", "ops")
    names = set()
    for library in glob.glob(os.path.join(ops_dir, "_*.so")):
        op_list = pywrap_tf_session.TF_GetOpList(pywrap_tf_session.TF_LoadLibrary(library))
        names |= {op.name for op in op_def_pb2.OpList.FromString(op_list).op}
    return names


def test_note_packer_saves_reloads_and_uses_only_sentencepiece_ops_from_tensorflow_text(
    model_proto, notes, tmp_path
):
    packer = NotePacker(model_proto, seq_length=32)
    batch = tf.constant([*notes[:8], ""])
    expected = tokenize_and_pack(
        batch, make_tokenizer(model_proto), SpecialIds.from_model_proto(model_proto), 32
    )
    tf.saved_model.save(packer, str(tmp_path / "packer"))
    reloaded = tf.saved_model.load(str(tmp_path / "packer"))
    outputs = reloaded(batch)
    for key in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(outputs[key], expected[key])
    assert outputs["token_ids"][-1, :3].numpy().tolist() == [CLS, SEP, PAD]
    assert (outputs["padding_mask"][:-1].numpy().sum(axis=1) == 32).all()

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((tmp_path / "packer" / "saved_model.pb").read_bytes())
    used = set()
    for graph in saved.meta_graphs:
        used |= {node.op for node in graph.graph_def.node}
        used |= {node.op for f in graph.graph_def.library.function for node in f.node_def}
    text_ops = _tensorflow_text_ops()
    assert {"TFText>RoundRobinTrim", "SentencepieceDetokenizeOp"} <= text_ops
    assert used & text_ops == {"SentencepieceOp", "SentencepieceTokenizeOp"}
