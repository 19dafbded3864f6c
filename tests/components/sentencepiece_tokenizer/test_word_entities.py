"""Words over pieces and served entities: first-piece labels, conlleval reading, and offsets that index
the exact string a client sent, for text that NFKC changes, CRLF and emoji."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from albert_keras import AlbertBackbone, AlbertTokenClassifier, bio_labels
from components.sentencepiece_tokenizer.tokenize_graph import NotePacker, make_tokenizer
from components.sentencepiece_tokenizer.word_entities import (
    IGNORE,
    decode_entities,
    word_labels,
    word_starts,
)
from components.transform_module import normalize_in_graph

# Each changes under NFKC or holds what SentencePiece's offsets must step over.
TRICKY = (
    "The ﬁbrosis of  ＡＰＣ gene, ２０ mg.",  # a ligature, full-width letters and digits, two spaces
    "Cafe\u0301 au lait spots\r\nthen ataxia",  # a combining accent, CRLF
    "  😀 adenomatous polyposis coli 😀 ",  # emoji, spaces at both ends
    "( APC ) tumour\tsuppressor",  # a mark alone before "(", a tab
)


def _words(text: str) -> list[tuple[int, int]]:
    """Whitespace-delimited words of `text`, as (start, end) characters."""
    found, start = [], None
    for index, char in enumerate(text + " "):
        if char.isspace() and start is not None:
            found.append((start, index))
            start = None
        elif not char.isspace() and start is None:
            start = index
    return found


@pytest.fixture(scope="module")
def tokenizer(model_proto):
    return make_tokenizer(model_proto)


def _tokenized(tokenizer, texts):
    return tokenizer.tokenize_with_offsets(tf.constant(list(texts)))


def test_one_first_piece_per_word_for_text_nfkc_changes(tokenizer, model_proto):
    for text in TRICKY:
        ids, _, _ = _tokenized(tokenizer, [text])
        starts = word_starts(ids, model_proto)
        assert int(tf.reduce_sum(tf.cast(starts.values, tf.int32))) == len(_words(text)), text


def test_the_raw_text_and_the_transforms_normalized_text_give_the_same_pieces(tokenizer):
    raw = tokenizer.tokenize(tf.constant(list(TRICKY)))
    normalized = tokenizer.tokenize(normalize_in_graph(tf.constant(list(TRICKY))))
    assert raw.to_list() == normalized.to_list()


def test_a_word_is_labelled_at_its_first_piece_with_its_first_entity_label(tokenizer, model_proto):
    # "adenomatous polyposis" splits into several pieces a word; piece labels as bio_piece_labels makes
    # them for a span that starts inside the first word: O O B I I | I I I.
    ids, _, _ = _tokenized(tokenizer, ["adenomatous polyposis"])
    starts = word_starts(ids, model_proto)
    first = starts.values.numpy()
    pieces = len(first)
    second_word = int(np.flatnonzero(first)[1])
    labels = [0] * 2 + [1] + [2] * (pieces - 3)
    assert second_word > 3  # the span starts inside the first word
    got = word_labels(tf.RaggedTensor.from_row_lengths(tf.constant(labels, tf.int64), [pieces]), starts)
    expected = [IGNORE] * pieces
    expected[0], expected[second_word] = 1, 2  # the first word begins the entity, the second continues
    assert got.values.numpy().tolist() == expected


def _decode(tokenizer, model_proto, texts, word_label_rows, types=("Disease", "Gene")):
    """Entities for texts whose words carry the given BIO ids (one list per text, one id per word)."""
    ids, starts, ends = _tokenized(tokenizer, texts)
    first = word_starts(ids, model_proto)
    labels = []
    for row_first, row_labels in zip(first.to_list(), word_label_rows, strict=True):
        words = iter(row_labels)
        labels.append([next(words) if is_first else 0 for is_first in row_first])
    label_ids = tf.ragged.constant(labels, dtype=tf.int64, ragged_rank=1)
    label_ids = tf.RaggedTensor.from_row_lengths(label_ids.flat_values, ids.row_lengths())
    scores = label_ids.with_values(tf.fill(tf.shape(label_ids.flat_values), 0.75))
    out = decode_entities(tf.constant(list(texts)), starts, ends, first, label_ids, scores, list(types))
    out = {name: value.numpy() for name, value in out.items()}
    found = []
    for row, text in enumerate(texts):
        n = int(out["num_entities"][row])
        assert (out["entity_starts"][row][n:] == -1).all() and (out["entity_types"][row][n:] == b"").all()
        found.append(
            [
                (text[start:end], kind.decode())
                for start, end, kind in zip(
                    out["entity_starts"][row][:n],
                    out["entity_ends"][row][:n],
                    out["entity_types"][row][:n],
                    strict=True,
                )
            ]
        )
    return found, out


def test_entity_offsets_index_the_text_sent(tokenizer, model_proto):
    b, i, gene = 1, 2, 3
    rows = [
        [0, b, 0, b, 0, 0, 0],  # fibrosis; APC
        [b, i, i, 0, 0, b],  # Café au lait; ataxia (after CRLF)
        [0, b, i, i, 0],  # adenomatous polyposis coli, between emoji
        [gene, 0, gene, b, i],  # "(" alone is a word; "tumour suppressor"
    ]
    found, out = _decode(tokenizer, model_proto, TRICKY, rows)
    assert found == [
        [("ﬁbrosis", "Disease"), ("ＡＰＣ", "Disease")],
        [("Cafe\u0301 au lait", "Disease"), ("ataxia", "Disease")],
        [("adenomatous polyposis coli", "Disease")],
        [("(", "Gene"), (")", "Gene"), ("tumour\tsuppressor", "Disease")],
    ]
    np.testing.assert_allclose(out["entity_scores"][0][:2], 0.75)


def test_entities_are_read_as_conlleval_reads_them(tokenizer, model_proto):
    text = "one two three four five six seven"
    b, i, i_gene = 1, 2, 4
    found, _ = _decode(tokenizer, model_proto, [text, "", "alone"], [[i, i, b, b, i, i_gene, 0], [], [0]])
    assert found == [
        [
            ("one two", "Disease"),  # an I after nothing starts an entity
            ("three", "Disease"),  # B after I of its type: a new one
            ("four five", "Disease"),
            ("six", "Gene"),  # an I of another type starts one
        ],
        [],  # an empty text: no entities, not an error
        [],
    ]


@pytest.mark.slow
def test_a_token_export_answers_entities_at_the_clients_offsets(tmp_path, model_proto):
    """The real serving signature, its classifier forced to say B-Disease on every word."""
    from components.trainer.finetune import TokenServingModule

    names = bio_labels(["Disease"])

    class Layer(tf.Module):
        def __init__(self):
            super().__init__()
            self.packer = NotePacker(model_proto, 64)

        def __call__(self, features):
            return self.packer(normalize_in_graph(features["text"]))

    class Transform:  # what TokenServingModule asks of tft.TFTransformOutput
        def transform_features_layer(self):
            return Layer()

        def raw_feature_spec(self):
            return {"text": tf.io.FixedLenFeature([], tf.string)}

        def transformed_feature_spec(self):
            return {"token_ids": tf.io.FixedLenFeature([64], tf.int64)}

    keras.utils.set_random_seed(0)
    backbone = AlbertBackbone.from_preset("tiny", vocab_size=500, max_position_embeddings=64)
    classifier = AlbertTokenClassifier(backbone, num_labels=len(names))
    kernel, bias = classifier.output_dense.get_weights()
    forced = np.full_like(bias, -10.0)
    forced[names.index("B-Disease")] = 10.0
    classifier.output_dense.set_weights([np.zeros_like(kernel), forced])
    module = TokenServingModule(classifier, Transform(), names, model_proto)
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve_text})
    serve = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    texts = [*TRICKY, ""]
    answer = {k: v.numpy() for k, v in serve(text=tf.constant(texts)).items()}
    for row, text in enumerate(texts):
        n = int(answer["num_entities"][row])
        spans = list(zip(answer["entity_starts"][row][:n], answer["entity_ends"][row][:n], strict=True))
        assert spans == _words(text), text  # every word its own entity, at its own characters
        assert set(answer["entity_types"][row][:n]) <= {b"Disease"}
        assert (answer["entity_scores"][row][:n] > 0.99).all()
