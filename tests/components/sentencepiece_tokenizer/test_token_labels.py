"""BIO labels per SentencePiece piece from character spans, their packing, and entity-level scores on
words (conlleval)."""

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


def test_a_batch_without_any_span_is_all_outside(model_proto):
    # As at serving, where requests carry text only.
    starts, _, labels = _labels(model_proto, ["No mention here.", "Nor here."], [[], []])
    assert all(set(row) == {0} for row in labels) and len(labels[0]) == len(starts[0]) > 0


def test_labels_pack_like_the_ids_with_special_positions_ignored():
    labels = tf.ragged.constant([[1, 2, 0, 0, 3], [0]], dtype=tf.int64)
    packed = pack_labels(labels, seq_length=5).numpy()
    ignore = IGNORE_LABEL
    np.testing.assert_array_equal(packed, [[ignore, 1, 2, 0, ignore], [ignore, 0, ignore, ignore, ignore]])


def test_entity_spans_read_bio_as_conlleval():
    # B-0 I-0 | O | B-1 | I-1 after O starts an entity | I-0 after I-1 (another type) starts another.
    expected = {(0, 2, 0), (3, 4, 1), (5, 7, 1), (7, 8, 1), (8, 9, 0)}
    assert entity_spans([1, 2, 0, 3, 0, 4, 4, 3, 2]) == expected
    assert entity_spans([4, 2]) == {(0, 1, 1), (1, 2, 0)}  # I at the start starts an entity
    assert entity_spans([IGNORE_LABEL, 1, 2, IGNORE_LABEL]) == {(1, 3, 0)}  # as the PHI tagger reads
    assert entity_spans([0, 0]) == set()


IGNORE = IGNORE_LABEL
# Types 0 and 1: O = 0, B-0 = 1, I-0 = 2, B-1 = 3, I-1 = 4. One packed row: [CLS], eleven words
# w0..w10, [SEP], padding. w1 is three pieces and w4 two; only a word's first piece is labelled.
#             CLS  w0 w1 (w1 pieces)    w2 w3 w4 (w4)    w5 w6 w7 w8 w9 w10 SEP     pad
GOLD_ROW = [IGNORE, 1, 2, IGNORE, IGNORE, 2, 0, 4, IGNORE, 4, 3, 0, 1, 4, 0, IGNORE, IGNORE]
PREDICTED_ROW = [1, 1, 2, 0, 3, 2, 0, 4, 0, 4, 3, 2, 1, 2, 0, 3, 0]  # ignored positions: anything
# On words (conlleval), as (first word, end word, type):
#   gold       B-0 I-0 I-0 O I-1 I-1 B-1 O   B-0 I-1 O   -> (0,3,0) (4,6,1) (6,7,1) (8,9,0) (9,10,1)
#              (I-1 after O starts; B-1 after I-1 starts anew; I-1 after B-0 is a change of type)
#   predicted  B-0 I-0 I-0 O I-1 I-1 B-1 I-0 B-0 I-0 O   -> (0,3,0) (4,6,1) (6,7,1) (7,8,0) (8,10,0)
# Right: (0,3,0) (4,6,1) (6,7,1) -- (0,3,0) and (4,6,1) cross ignored pieces that are O or B-1 in
# the prediction, and still count as whole entities.
#   micro   P = 3/5, R = 3/5, F1 = 3/5
#   type 0  gold 2, predicted 3, right 1: P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 2/5
#   type 1  gold 3, predicted 2, right 2: P = 1,   R = 2/3, F1 = 2 * (2/3) / (5/3) = 4/5


def test_entity_scores_read_words_as_conlleval_micro_and_per_type():
    words = np.asarray(GOLD_ROW)[np.asarray(GOLD_ROW) >= 0]
    assert entity_spans(words) == {(0, 3, 0), (4, 6, 1), (6, 7, 1), (8, 9, 0), (9, 10, 1)}
    scores = entity_scores([GOLD_ROW], [PREDICTED_ROW])
    assert (scores["true_positives"], scores["gold"], scores["predicted"]) == (3, 5, 5)
    assert scores["precision"] == scores["recall"] == scores["f1"] == pytest.approx(3 / 5)
    assert set(scores["by_type"]) == {0, 1}
    first, second = scores["by_type"][0], scores["by_type"][1]
    assert (first["true_positives"], first["gold"], first["predicted"]) == (1, 2, 3)
    assert (first["precision"], first["recall"]) == (pytest.approx(1 / 3), pytest.approx(1 / 2))
    assert first["f1"] == pytest.approx(2 / 5)
    assert (second["true_positives"], second["gold"], second["predicted"]) == (2, 3, 2)
    assert (second["precision"], second["recall"]) == (1.0, pytest.approx(2 / 3))
    assert second["f1"] == pytest.approx(4 / 5)


def test_entity_scores_need_exact_span_and_type():
    gold = [[IGNORE_LABEL, 1, 2, 0, 3, 4, IGNORE_LABEL], [IGNORE_LABEL, 0, 1, IGNORE_LABEL]]
    predicted = [[3, 1, 2, 0, 3, 0, 1], [0, 0, 3, 0]]  # second row: right span, wrong type
    scores = entity_scores(gold, predicted)
    # On words. Gold: (0,2,0), (3,5,1); (1,2,0). Predicted: (0,2,0), (3,4,1); (1,2,1).
    assert (scores["gold"], scores["predicted"]) == (3, 3)
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    assert entity_scores(gold, gold)["f1"] == 1.0
    empty = entity_scores([[IGNORE_LABEL, 0]], [[1, 0]])
    assert (empty["f1"], empty["gold"], empty["predicted"], empty["by_type"]) == (0.0, 0, 0, {})


def test_transform_labels_every_ncbi_sample_mention_that_fits(model_proto):
    # Ingestion (reader, text steps, tf.Example) then the Transform's label features: decoding the
    # packed labels finds each mention, type included, up to the truncation point, in whole words.
    import json
    from pathlib import Path

    from components.clinical_example_gen import examples, readers, text_steps
    from components.transform_module import normalize_in_graph, token_label_features, word_label_pieces

    sample = Path(__file__).resolve().parents[3] / "data" / "sample" / "ncbi_disease_sample.jsonl"
    types = ["SpecificDisease", "DiseaseClass", "CompositeMention"]  # Modifier left out on purpose
    reader = readers.make_reader("jsonl", {"spans_key": "entities"}, readers.DEFAULT_MAX_NOTE_BYTES)
    steps = text_steps.TextSteps()
    notes = [steps(record) for record in reader(str(sample), "ncbi")][:40]
    parsed = [examples.to_example(note).features.feature for note in notes]
    spans = {
        "span_starts": tf.ragged.constant(
            [list(f["span_starts"].int64_list.value) for f in parsed], tf.int64
        ),
        "span_ends": tf.ragged.constant([list(f["span_ends"].int64_list.value) for f in parsed], tf.int64),
        "span_types": tf.ragged.constant([list(f["span_types"].bytes_list.value) for f in parsed], tf.string),
    }
    texts = tf.constant([note.text for note in notes])
    word_labels, _ = word_label_pieces(texts, spans, model_proto, types)
    out = token_label_features(word_labels, spans, 256)
    _, starts, ends = make_tokenizer(model_proto).tokenize_with_offsets(normalize_in_graph(texts))
    names = bio_labels(types)
    source = {d["id"]: d for d in map(json.loads, sample.read_text(encoding="utf-8").splitlines())}
    labelled_total = 0
    for row, note in enumerate(notes):
        labels = out["token_labels"][row].numpy()
        # Entities are read on the labelled positions (words), as the Evaluator reads them; a word runs
        # from its labelled piece to the piece before the next word's (or [SEP]). Piece = position - 1.
        words = np.flatnonzero(labels >= 0)
        sep = min(254, len(ends[row])) + 1
        word_ends = [*words[1:], sep]
        decoded = set()
        for first, end, kind in entity_spans(labels[words]):
            start_byte, end_byte = starts[row][words[first] - 1], ends[row][word_ends[end - 1] - 2]
            decoded.add((note.text.encode()[start_byte:end_byte].decode().strip(), types[kind]))
        typed = [s for s in note.spans if s.type in types]
        mentions = {(note.text[s.start : s.end], s.type) for s in typed}
        # Each entity is whole words around one or more mentions of its type, and each mention that fits
        # lies in an entity of its type.
        for text, kind in decoded:
            assert any(m in text for m, t in mentions if t == kind), (note.note_id, text)
        last_piece_end = ends[row][sep - 2]  # the last piece that fits
        fits = {
            (note.text[s.start : s.end], s.type)
            for s in typed
            if len(note.text[: s.end].encode()) <= last_piece_end
        }
        for mention, kind in fits:
            assert any(mention in text for text, t in decoded if t == kind), (note.note_id, mention)
        assert out["num_spans"][row] == len(source[note.note_id]["entities"])
        assert out["num_spans_labelled"][row] == len([n for n in labels if n > 0 and n % 2 == 1])
        labelled_total += int(out["num_spans_labelled"][row])
        assert labels[0] == IGNORE_LABEL
        assert {n for n in labels if n != IGNORE_LABEL} <= set(range(len(names)))
    assert labelled_total > 100
