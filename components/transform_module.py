"""The Transform graph: raw note text to ALBERT's inputs, and the features the trainers and the
validators need. It is also the first half of the served model, so training and serving tokenize
with the same graph (tensorflow-text's SentencePiece ops, which the stock TF Serving 2.16 has).

`preprocessing_fn(inputs, custom_config)` reads from custom_config:
    tokenizer_dir   the SentencePiece tokenizer artifact (added by TokenizedTransform)
    seq_length      ALBERT's sequence length for classification inputs
    label_names     the classes in id order (optional; else a vocabulary of the training labels)
    task            "note_classification" (default) or "token_classification"
    entity_types    token classification: the span types, in label order (see `bio_labels`)

Outputs (per note):
    token_ids, segment_ids, padding_mask   int64 (seq_length,): `[CLS] note [SEP]`, truncated
    label                                   int64: index of the note's first label in label_names (or
                                            the `labels` vocabulary); -1 when it has none or another
                                            (note classification only)
    sentence_token_ids                      int64 (tokens,): every sentence's ids, concatenated
    sentence_lengths                        int64 (sentences,): ids per sentence (pretraining pairs)
    num_cls, unk_fraction                   token-level checks: one [CLS]; the share of <unk> ids
    note_type, length_bucket                slicing keys for the Evaluator
Token classification adds (from the `span_*` features that ingestion writes for annotated sources):
    token_labels                            int64 (seq_length,): BIO label id per packed position,
                                            -100 at [CLS], [SEP] and padding
    num_spans, num_spans_labelled           mentions annotated, and those that reached a labelled
                                            piece (the rest lie past seq_length or have another type)
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
import tensorflow_text as tf_text
import tensorflow_transform as tft

from components.sentencepiece_tokenizer.token_labels import bio_piece_labels, pack_labels
from components.sentencepiece_tokenizer.tokenize_graph import SpecialIds, make_tokenizer, pack, tokenize

LABEL_VOCABULARY = "labels"
MODEL_FILE = "spm.model"
# Note lengths (characters) at which the Evaluator's length slices change.
LENGTH_BUCKETS = (1000, 3000, 6000)


def read_model_proto(tokenizer_dir: str) -> bytes:
    with tf.io.gfile.GFile(os.path.join(tokenizer_dir, MODEL_FILE), "rb") as f:
        return f.read()


def _dense_strings(feature: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """A single-valued string feature as `[batch]` ("" where absent)."""
    if isinstance(feature, tf.SparseTensor):
        feature = tf.sparse.to_dense(feature, default_value="")
    feature = tf.reshape(feature, [tf.shape(feature)[0], -1])
    return tf.concat([feature, tf.fill([tf.shape(feature)[0], 1], "")], axis=1)[:, 0]


def normalize_in_graph(texts: tf.Tensor) -> tf.Tensor:
    """The part of ingestion's normalization that serving must repeat on raw text: NFKC, one space
    for each run of spaces or tabs. Idempotent on text that ingestion already normalized."""
    texts = tf_text.normalize_utf8(texts, "NFKC")
    return tf.strings.strip(tf.strings.regex_replace(texts, r"[ \t]+", " "))


def note_features(texts: tf.Tensor, model_proto: bytes, seq_length: int) -> dict[str, tf.Tensor]:
    """Raw note text `[batch]` -> packed ALBERT inputs (int64 `[batch, seq_length]`) and token checks.

    Shared by `preprocessing_fn` and the serving signature.
    """
    tokenizer = make_tokenizer(model_proto)
    special = SpecialIds.from_model_proto(model_proto)
    ids = tokenize(tokenizer, normalize_in_graph(texts))
    packed = pack(
        ids, seq_length=seq_length, cls_id=special.cls_id, sep_id=special.sep_id, pad_id=special.pad_id
    )
    features = {name: tf.cast(value, tf.int64) for name, value in packed.items()}
    unk_id = 1  # ALBERT's convention, checked by the tokenizer trainer
    features["num_cls"] = tf.reduce_sum(
        tf.cast(tf.equal(packed["token_ids"], special.cls_id), tf.int64), axis=1
    )
    unknown = tf.reduce_sum(tf.cast(tf.equal(ids, unk_id), tf.float32), axis=1)
    features["unk_fraction"] = tf.math.divide_no_nan(unknown, tf.cast(ids.row_lengths(), tf.float32))
    return features


def token_label_features(
    texts: tf.Tensor,
    spans: dict[str, tf.RaggedTensor],
    model_proto: bytes,
    seq_length: int,
    entity_types: list[str],
) -> dict[str, tf.Tensor]:
    """BIO labels for the packed inputs that `note_features` makes of the same `texts`.

    `spans` holds `span_starts`, `span_ends` (UTF-8 byte offsets into the text) and `span_types`,
    ragged `[batch, (spans)]`. Spans of a type not in `entity_types` label nothing and are counted out
    of `num_spans_labelled`, as are spans wholly past the pieces that fit in `seq_length`.
    """
    tokenizer = make_tokenizer(model_proto)
    # Ingestion wrote normalized text, on which normalize_in_graph changes nothing: the offsets hold.
    _, starts, ends = tokenizer.tokenize_with_offsets(normalize_in_graph(texts))
    kinds = tf.ragged.map_flat_values(_index_table(entity_types).lookup, spans["span_types"])
    known = kinds >= 0
    kept = {
        name: tf.ragged.boolean_mask(tf.cast(spans[name], tf.int64), known)
        for name in ("span_starts", "span_ends")
    }
    labels = bio_piece_labels(
        starts, ends, kept["span_starts"], kept["span_ends"], tf.ragged.boolean_mask(kinds, known)
    )
    packed = pack_labels(labels, seq_length)
    beginning = tf.logical_and(packed > 0, tf.equal(packed % 2, 1))  # B-t ids are odd
    return {
        "token_labels": packed,
        "num_spans": tf.cast(spans["span_types"].row_lengths(), tf.int64),
        "num_spans_labelled": tf.reduce_sum(tf.cast(beginning, tf.int64), axis=1),
    }


def _ragged(feature: tf.Tensor | tf.SparseTensor) -> tf.RaggedTensor:
    if isinstance(feature, tf.SparseTensor):
        return tf.RaggedTensor.from_sparse(feature)
    return tf.RaggedTensor.from_tensor(feature)


def _sentence_features(sentences: tf.SparseTensor, model_proto: bytes) -> dict[str, tf.SparseTensor]:
    """Each note's sentences tokenized: ids concatenated, and the number of ids per sentence."""
    tokenizer = make_tokenizer(model_proto)
    sentence_ids = tokenize(tokenizer, sentences.values)  # (all sentences, (ids))
    per_note = tf.RaggedTensor.from_value_rowids(
        sentence_ids.row_lengths(), sentences.indices[:, 0], nrows=sentences.dense_shape[0]
    )  # (batch, (sentences))
    ids_per_note = tf.RaggedTensor.from_row_lengths(
        sentence_ids.values, tf.reduce_sum(per_note, axis=1)
    )  # (batch, (ids))
    return {
        "sentence_token_ids": tf.cast(ids_per_note, tf.int64).to_sparse(),
        "sentence_lengths": tf.cast(per_note, tf.int64).to_sparse(),
    }


def preprocessing_fn(inputs: dict[str, Any], custom_config: dict[str, Any]) -> dict[str, Any]:
    model_proto = read_model_proto(custom_config["tokenizer_dir"])
    texts = _dense_strings(inputs["text"])
    outputs = note_features(texts, model_proto, int(custom_config["seq_length"]))
    outputs.update(_sentence_features(inputs["sentences"], model_proto))
    if custom_config.get("task", "note_classification") == "token_classification":
        spans = {name: _ragged(inputs[name]) for name in ("span_starts", "span_ends", "span_types")}
        outputs.update(
            token_label_features(
                texts, spans, model_proto, int(custom_config["seq_length"]), custom_config["entity_types"]
            )
        )
    else:
        outputs["label"] = _note_label(inputs["labels"], list(custom_config.get("label_names") or []))
    outputs["note_type"] = _dense_strings(inputs["note_type"])
    outputs["length_bucket"] = tf.searchsorted(
        tf.constant(LENGTH_BUCKETS, tf.int64),
        _dense_int(inputs["num_chars"]),
        side="right",
        out_type=tf.int64,
    )
    return outputs


def _index_table(names: list[str]) -> tf.lookup.StaticHashTable:
    """name -> its position in `names` (int64), -1 for any other string."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(names)), tf.range(len(names), dtype=tf.int64)),
        default_value=-1,
    )


def _note_label(labels: tf.SparseTensor, label_names: list[str]) -> tf.Tensor:
    """The classification target: the note's first label (notes listed under several specialties
    carry them all, sorted; see the ingestion's dedupe), as its index in the configured label names,
    or else in a vocabulary computed over the training split; -1 for none or another."""
    first_label = _dense_strings(tf.sparse.slice(labels, [0, 0], [tf.int64.max, 1]))
    if label_names:
        return _index_table(label_names).lookup(first_label)
    return tft.compute_and_apply_vocabulary(
        first_label, vocab_filename=LABEL_VOCABULARY, default_value=-1, frequency_threshold=1
    )


def _dense_int(feature: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    if isinstance(feature, tf.SparseTensor):
        feature = tf.sparse.to_dense(feature, default_value=0)
    return tf.reshape(feature, [-1])
