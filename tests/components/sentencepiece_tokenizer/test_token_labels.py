"""BIO labels per SentencePiece piece from character spans, their packing, and entity-level scores."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from albert_keras import IGNORE_LABEL, bio_labels
from components.sentencepiece_tokenizer.token_labels import (
    bio_piece_labels,
    entity_scores,
    entity_spans,
    pack_labels,
)
from components.sentencepiece_tokenizer.tokenize_graph import make_tokenizer

TYPES = ["SpecificDisease", "Modifier"]
NAMES = bio_labels(TYPES)


def _labels(model_proto: bytes, texts: list[str], spans: list[list[tuple[str, str]]]):
    """Pieces, their byte offsets and labels; spans given as (mention, type), found in the text."""
    tokenizer = make_tokenizer(model_proto)
    _, starts, ends = tokenizer.tokenize_with_offsets(tf.constant(texts))
    rows = []
    for text, row in zip(texts, spans, strict=True):
        encoded = text.encode("utf-8")
        found = []
        for mention, kind in row:
            start = encoded.index(mention.encode("utf-8"))
            found.append((start, start + len(mention.encode("utf-8")), TYPES.index(kind)))
        rows.append(found)
    ragged = [tf.ragged.constant([[s[i] for s in row] for row in rows], dtype=tf.int64) for i in range(3)]
    for r in ragged:  # rows without spans still need their (empty) row
        assert r.nrows() == len(texts)
    labels = bio_piece_labels(starts, ends, *ragged)
    return starts.to_list(), ends.to_list(), labels.to_list()


def test_pieces_of_a_mention_are_one_b_then_i_and_nothing_else_is_labelled(model_proto):
    text = "Germline mutations in BRCA1 are responsible for inherited breast and ovarian cancer in women."
    mention = "inherited breast and ovarian cancer"
    starts, ends, labels = _labels(model_proto, [text], [[(mention, "SpecificDisease")]])
    starts, ends, labels = starts[0], ends[0], labels[0]
    labelled = [i for i, label in enumerate(labels) if label != 0]
    assert labelled == list(range(labelled[0], labelled[-1] + 1))  # one contiguous run
    inside = ["I-SpecificDisease"] * (len(labelled) - 1)
    assert [NAMES[labels[i]] for i in labelled] == ["B-SpecificDisease", *inside]
    covered = text.encode()[starts[labelled[0]] : ends[labelled[-1]]].decode()
    assert covered.strip() == mention  # the run is the mention, at most a leading space more
    assert len(labelled) < len(labels)


def test_adjacent_mentions_each_begin_and_byte_offsets_survive_accents(model_proto):
    text = "Ménière disease and X-linked ataxia were both seen."
    spans = [[("X-linked", "Modifier"), ("ataxia", "SpecificDisease")], []]
    starts, ends, labels = _labels(model_proto, [text, "No mention here."], spans)
    names = [NAMES[label] for label in labels[0]]
    assert names.count("B-Modifier") == 1 and names.count("B-SpecificDisease") == 1
    first_b = names.index("B-Modifier")
    second_b = names.index("B-SpecificDisease")
    assert first_b < second_b and all(name == "I-Modifier" for name in names[first_b + 1 : second_b])
    first_piece = text.encode()[starts[0][second_b] : ends[0][second_b]].decode().strip()
    assert first_piece and "ataxia".startswith(first_piece)  # the é before took two bytes, not one
    assert set(labels[1]) == {0}


def test_labels_pack_like_the_ids_with_special_positions_ignored():
    labels = tf.ragged.constant([[1, 2, 0, 0, 3], [0]], dtype=tf.int64)
    packed = pack_labels(labels, seq_length=5).numpy()
    ignore = IGNORE_LABEL
    np.testing.assert_array_equal(packed, [[ignore, 1, 2, 0, ignore], [ignore, 0, ignore, ignore, ignore]])


def test_entity_spans_read_bio_leniently():
    # B-0 I-0 | O | B-1 | I-1 without B-1 before it starts an entity | I-0 after B-1 starts another.
    expected = {(0, 2, 0), (3, 4, 1), (5, 7, 1), (7, 8, 1), (8, 9, 0)}
    assert entity_spans([1, 2, 0, 3, 0, 4, 4, 3, 2]) == expected
    assert entity_spans([IGNORE_LABEL, 1, 2, IGNORE_LABEL]) == {(1, 3, 0)}
    assert entity_spans([0, 0]) == set()


def test_entity_scores_need_exact_span_and_type():
    gold = [[IGNORE_LABEL, 1, 2, 0, 3, 4, IGNORE_LABEL], [IGNORE_LABEL, 0, 1, IGNORE_LABEL]]
    predicted = [[3, 1, 2, 0, 3, 0, 1], [0, 0, 3, 0]]  # second row: right span, wrong type
    scores = entity_scores(gold, predicted)
    # Gold: (1,3,0), (4,6,1), (2,3,0). Predicted: (1,3,0), (4,5,1), (2,3,1) (ignored positions dropped).
    assert (scores["gold"], scores["predicted"]) == (3, 3)
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    assert entity_scores(gold, gold)["f1"] == 1.0
