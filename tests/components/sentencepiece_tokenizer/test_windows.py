"""Whole notes in windows: which pieces each window holds, which window labels each piece, the
Transform's window features, pooled note logits, and a token export that reads a note five windows
long to its end and refuses one past its cap."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from components.sentencepiece_tokenizer.windows import WindowSpec, flat_windows, pool, stitch

SPEC = WindowSpec(budget=4, stride=2, max_windows=3)  # cap: 2 * 2 + 4 = 8 pieces
NOTES = [[10, 11, 12, 13, 14, 15, 16], [20], [], [30, 31, 32, 33, 34, 35, 36, 37, 38, 39]]


def _pieces(rows=NOTES) -> tf.RaggedTensor:
    return tf.ragged.constant(rows, dtype=tf.int64, ragged_rank=1)


def test_windows_overlap_by_stride_and_stop_at_the_cap():
    windows, note, first = flat_windows(_pieces(), SPEC)
    assert SPEC.cap == 8
    assert windows.to_list() == [
        [10, 11, 12, 13], [12, 13, 14, 15], [14, 15, 16],  # 7 pieces: three windows, the last short
        [20],
        [],  # an empty note still has its one (empty) window
        [30, 31, 32, 33], [32, 33, 34, 35], [34, 35, 36, 37],  # 10 pieces: 38 and 39 are past the cap
    ]  # fmt: skip
    assert note.numpy().tolist() == [0, 0, 0, 1, 2, 3, 3, 3]
    assert first.numpy().tolist() == [0, 2, 4, 0, 0, 0, 2, 4]
    assert SPEC.count(tf.constant([0, 4, 5, 6, 7, 100])).numpy().tolist() == [1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="stride"):
        WindowSpec(budget=4, stride=5, max_windows=2)


def test_each_piece_is_read_where_it_sits_most_centrally():
    _, note, _ = flat_windows(_pieces(), SPEC)
    windows = int(tf.size(note))
    # Window w's position i holds the value 100 * w + i.
    values = tf.constant([[100 * w + i for i in range(SPEC.budget)] for w in range(windows)], tf.int64)
    stitched = stitch(values, _pieces().row_lengths(), SPEC).to_list()
    # Note 0: piece 2 sits at the edge of window 1 (position 0) but one from window 0's edge -> window 0;
    # piece 3 is one from window 1's edges, none from window 0's -> window 1; and so on.
    assert stitched[0] == [0, 1, 2, 101, 102, 201, 202]
    assert stitched[1] == [300] and stitched[2] == []
    assert stitched[3] == [500, 501, 502, 601, 602, 701, 702, 703]  # cut at the cap


def test_note_logits_pool_their_windows_by_mean_or_max():
    logits = tf.constant([[1.0, 0.0], [3.0, -2.0], [5.0, 1.0]])
    note = tf.constant([0, 0, 1], tf.int64)
    np.testing.assert_allclose(pool(logits, note, 2, "mean"), [[2.0, -1.0], [5.0, 1.0]])
    np.testing.assert_allclose(pool(logits, note, 2, "max"), [[3.0, 0.0], [5.0, 1.0]])
    with pytest.raises(ValueError, match="mean or max"):
        pool(logits, note, 2, "median")


def test_the_transform_lays_every_window_of_a_note_end_to_end(model_proto):
    from components.sentencepiece_tokenizer.tokenize_graph import SpecialIds, make_tokenizer, tokenize
    from components.transform_module import normalize_in_graph, window_features

    spec = WindowSpec(budget=6, stride=3, max_windows=4)
    texts = tf.constant(["chest pain " * 8, "no pain", ""])
    ids = tokenize(make_tokenizer(model_proto), normalize_in_graph(texts))
    out = window_features(ids, model_proto, 8, spec)
    lengths = ids.row_lengths().numpy()
    counts = out["num_windows"].numpy()
    assert counts.tolist() == _expected_counts(lengths, spec) and out["windows_cut"].numpy().tolist() == [
        int(n > spec.cap) for n in lengths
    ]
    token_ids = tf.sparse.to_dense(out["window_token_ids"]).numpy()
    cls = SpecialIds.from_model_proto(model_proto).cls_id
    for row, count in enumerate(counts):
        windows = token_ids[row][: count * 8].reshape(count, 8)
        assert (windows[:, 0] == cls).all() and (token_ids[row][count * 8 :] == 0).all()


def _expected_counts(lengths, spec: WindowSpec) -> list[int]:
    """The window count written out: one, plus one per stride past the budget, at most max_windows."""
    return [min(1 + max(0, -(-(int(n) - spec.budget) // spec.stride)), spec.max_windows) for n in lengths]


def test_the_windowed_dataset_makes_every_window_an_example_with_the_notes_label(tmp_path):
    from components.trainer.finetune import _dataset

    seq = 4
    path = str(tmp_path / "data.gz")
    notes = [([[2, 5, 6, 3], [2, 7, 3, 0]], 1), ([[2, 8, 3, 0]], 0)]  # two windows, then one
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for windows, label in notes:
            flat = [v for window in windows for v in window]
            features = {
                "window_token_ids": flat,
                "window_segment_ids": [0] * len(flat),
                "window_padding_mask": [int(v != 0) for v in flat],
                "label": [label],
            }
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        k: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
                        for k, v in features.items()
                    }
                )
            )
            writer.write(example.SerializeToString())
    spec = {
        **{
            f"window_{k}": tf.io.VarLenFeature(tf.int64) for k in ("token_ids", "segment_ids", "padding_mask")
        },
        "label": tf.io.FixedLenFeature([], tf.int64),
        "token_ids": tf.io.FixedLenFeature([seq], tf.int64),
    }
    batches = list(_dataset([path], spec, 8, None, "label", WindowSpec(budget=2, stride=1, max_windows=4)))
    (inputs, labels), *_ = batches
    assert inputs["token_ids"].numpy().tolist() == [[2, 5, 6, 3], [2, 7, 3, 0], [2, 8, 3, 0]]
    assert labels.numpy().tolist() == [1, 1, 0]


class _Layer(tf.Module):
    """The Transform's features for the export, from the real Transform functions."""

    def __init__(self, model_proto: bytes, seq: int, spec: WindowSpec):
        super().__init__()
        from components.sentencepiece_tokenizer.tokenize_graph import NotePacker, make_tokenizer

        self.packer = NotePacker(model_proto, seq)
        self.tokenizer = make_tokenizer(model_proto)
        self.model_proto, self.seq, self.spec = model_proto, seq, spec

    def __call__(self, features):
        from components.transform_module import normalize_in_graph, window_features

        text = normalize_in_graph(features["text"])
        out = dict(self.packer(text))
        ids = self.tokenizer.tokenize(text)
        out.update(window_features(ids, self.model_proto, self.seq, self.spec))
        return out


class _Transform:
    def __init__(self, model_proto: bytes, seq: int, spec: WindowSpec):
        self.args = (model_proto, seq, spec)

    def transform_features_layer(self):
        return _Layer(*self.args)

    def raw_feature_spec(self):
        return {"text": tf.io.FixedLenFeature([], tf.string)}

    def transformed_feature_spec(self):
        return {"token_ids": tf.io.FixedLenFeature([self.args[1]], tf.int64)}


@pytest.mark.slow
def test_a_note_five_windows_long_gets_entities_in_its_last_window(tmp_path, model_proto):
    from albert_keras import AlbertBackbone, AlbertTokenClassifier, bio_labels
    from components.trainer.finetune import TokenServingModule
    from serving.servable import refusal

    seq, spec = 16, WindowSpec(budget=14, stride=7, max_windows=6)  # cap 49 pieces
    names = bio_labels(["Disease"])
    keras.utils.set_random_seed(0)
    backbone = AlbertBackbone.from_preset("tiny", vocab_size=500, max_position_embeddings=seq)
    tagger = AlbertTokenClassifier(backbone, num_labels=len(names))
    kernel, bias = tagger.output_dense.get_weights()
    forced = np.full_like(bias, -10.0)
    forced[names.index("B-Disease")] = 10.0  # every word an entity
    tagger.output_dense.set_weights([np.zeros_like(kernel), forced])
    module = TokenServingModule(tagger, _Transform(model_proto, seq, spec), names, model_proto, spec)
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve_text})
    serve = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]

    from components.sentencepiece_tokenizer.tokenize_graph import make_tokenizer

    tokenizer = make_tokenizer(model_proto)
    vocabulary = ["chest", "pain", "ataxia", "fever", "cough", "rash"] * 10
    for count in range(1, len(vocabulary)):  # the fewest words that need a fifth window
        words = vocabulary[:count]
        text = " ".join(words)
        if int(spec.count(tokenizer.tokenize(tf.constant([text])).row_lengths())[0]) == 5:
            break
    assert int(spec.count(tokenizer.tokenize(tf.constant([text])).row_lengths())[0]) == 5
    answer = serve(text=tf.constant([text]))
    n = int(answer["num_entities"][0])
    found = [
        text[s:e]
        for s, e in zip(
            answer["entity_starts"][0][:n].numpy(), answer["entity_ends"][0][:n].numpy(), strict=True
        )
    ]
    assert found == words  # every word, the last window's too, at its own characters

    with pytest.raises(tf.errors.InvalidArgumentError) as refused:
        serve(text=tf.constant([text + " " + text]))
    assert refusal(refused.value.message) == (
        "rejected: the note is longer than this model reads: at most 49 SentencePiece pieces (6 windows; "
        "about 196 characters of English clinical text); split it and send the parts"
    )
