"""The Transform graph: raw note text to ALBERT's inputs, and the features the trainers and the
validators need. It is also the first half of the served model, so training and serving tokenize
with the same graph (tensorflow-text's SentencePiece ops, which the stock TF Serving 2.16 has).

`preprocessing_fn(inputs, custom_config)` reads from custom_config:
    tokenizer_dir   the SentencePiece tokenizer artifact (added by TokenizedTransform)
    seq_length      ALBERT's sequence length for classification inputs
    label_names     the classes in id order (optional; else a vocabulary of the training labels)
    task            "note_classification" (default), "multi_label_classification",
                    "text_pair_classification" (the `text_b` feature as segment B) or
                    "token_classification"
    label_priority  note classification: which label a note with several takes (optional)
    entity_types    token classification: the span types, in label order (see `bio_labels`)
    window_stride, max_windows   whole notes in windows (0: none; `window_spec`)

Outputs (per note):
    token_ids, segment_ids, padding_mask   int64 (seq_length,): `[CLS] note [SEP]`, truncated; for
                                            pairs `[CLS] text [SEP] text_b [SEP]`
    sentence_token_ids                      int64 (tokens,): every sentence's ids, concatenated
    sentence_lengths                        int64 (sentences,): ids per sentence (pretraining pairs)
    num_cls, unk_fraction                   token-level checks: one [CLS]; the share of <unk> ids
    note_type, length_bucket                slicing keys for the Evaluator
With windows (window_stride > 0; see `window_features` and components/sentencepiece_tokenizer/windows.py):
    window_token_ids, window_segment_ids,   int64 (num_windows * seq_length,), variable length: every
    window_padding_mask                     window of the note, packed, one after another
    num_windows, num_pieces, windows_cut    int64: windows, pieces, and 1 when the note had more
                                            pieces than the windows' cap (the rest is in no window)
    window_token_labels, note_token_labels  token classification: each window's labels as
                                            token_labels, and the note's word labels up to the cap
Note and text-pair classification add:
    label                                   int64: index of the note's label in label_names (or the
                                            `labels` vocabulary): its only one, or the first of its
                                            labels in label_priority; -1 when it has none, another,
                                            or several and no priority decides
    label_ambiguous                         int64: 1 where several labels left the note out
Multi-label classification (label_names required) adds:
    label_set                               int64 (labels,): 1 for each label the note carries
    num_labels                              int64: how many of the note's labels are in label_names
Token classification adds (from the `span_*` features that ingestion writes for annotated sources):
    token_labels                            int64 (seq_length,): the BIO label id of each word at
                                            its first piece (see word_entities.word_labels), -100 at
                                            the word's other pieces, [CLS], [SEP] and padding
    num_spans, num_spans_labelled           mentions annotated, and those whose first word reached a
                                            labelled piece (the rest lie past seq_length or have
                                            another type)
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
import tensorflow_text as tf_text
import tensorflow_transform as tft

from components.sentencepiece_tokenizer.token_labels import bio_piece_labels, pack_labels
from components.sentencepiece_tokenizer.tokenize_graph import SpecialIds, make_tokenizer, pack, tokenize
from components.sentencepiece_tokenizer.windows import WindowSpec, flat_windows
from components.sentencepiece_tokenizer.word_entities import IGNORE, word_labels, word_starts

LABEL_VOCABULARY = "labels"
LABEL_SET = "label_set"
MULTI_LABEL_TASK = "multi_label_classification"
PAIR_TASK = "text_pair_classification"
#: The second text of a pair (ingestion's `examples.TEXT_B`).
TEXT_B = "text_b"
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


def note_features(
    texts: tf.Tensor, model_proto: bytes, seq_length: int, texts_b: tf.Tensor | None = None
) -> dict[str, tf.Tensor]:
    """Raw note text `[batch]` -> packed ALBERT inputs (int64 `[batch, seq_length]`) and token checks.
    With `texts_b` (a question's passage, say), `[CLS] A [SEP] B [SEP]` with segment ids 0 and 1,
    the longer side truncated first (`pack`'s round robin); the checks stay on A.

    Shared by `preprocessing_fn` and the serving signature.
    """
    tokenizer = make_tokenizer(model_proto)
    special = SpecialIds.from_model_proto(model_proto)
    ids = tokenize(tokenizer, normalize_in_graph(texts))
    ids_b = None if texts_b is None else tokenize(tokenizer, normalize_in_graph(texts_b))
    packed = pack(
        ids, ids_b, seq_length=seq_length, cls_id=special.cls_id, sep_id=special.sep_id, pad_id=special.pad_id
    )
    features = {name: tf.cast(value, tf.int64) for name, value in packed.items()}
    unk_id = 1  # ALBERT's convention, checked by the tokenizer trainer
    features["num_cls"] = tf.reduce_sum(
        tf.cast(tf.equal(packed["token_ids"], special.cls_id), tf.int64), axis=1
    )
    unknown = tf.reduce_sum(tf.cast(tf.equal(ids, unk_id), tf.float32), axis=1)
    features["unk_fraction"] = tf.math.divide_no_nan(unknown, tf.cast(ids.row_lengths(), tf.float32))
    return features


def word_label_pieces(
    texts: tf.Tensor, spans: dict[str, tf.RaggedTensor], model_proto: bytes, entity_types: list[str]
) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """The BIO label of each word at its first piece, IGNORE at every other piece, `[batch, (pieces)]`
    over the pieces that `note_features` makes of the same `texts`; and the number of spans each text
    has of a known type.

    `spans` holds `span_starts`, `span_ends` (UTF-8 byte offsets into the text) and `span_types`,
    ragged `[batch, (spans)]`. Spans of a type not in `entity_types` label nothing.
    """
    tokenizer = make_tokenizer(model_proto)
    # Ingestion wrote normalized text, on which normalize_in_graph changes nothing: the offsets hold.
    ids, starts, ends = tokenizer.tokenize_with_offsets(normalize_in_graph(texts))
    kinds = tf.ragged.map_flat_values(_index_table(entity_types).lookup, spans["span_types"])
    known = kinds >= 0
    kept = {
        name: tf.ragged.boolean_mask(tf.cast(spans[name], tf.int64), known)
        for name in ("span_starts", "span_ends")
    }
    labels = bio_piece_labels(
        starts, ends, kept["span_starts"], kept["span_ends"], tf.ragged.boolean_mask(kinds, known)
    )
    return word_labels(labels, word_starts(ids, model_proto)), ids


def token_label_features(labels: tf.RaggedTensor, spans: dict[str, tf.RaggedTensor], seq_length: int) -> dict:
    """The first window's labels (`token_labels`), and the span counts for the token-level checks:
    spans whose first word fell in a labelled piece (the rest lie past seq_length or have another
    type)."""
    packed = pack_labels(labels, seq_length)
    beginning = tf.logical_and(packed > 0, tf.equal(packed % 2, 1))  # B-t ids are odd
    return {
        "token_labels": packed,
        "num_spans": tf.cast(spans["span_types"].row_lengths(), tf.int64),
        "num_spans_labelled": tf.reduce_sum(tf.cast(beginning, tf.int64), axis=1),
    }


def window_spec(custom_config: dict[str, Any]) -> WindowSpec | None:
    """The windows that `window_stride` and `max_windows` ask for; None when notes are cut at one."""
    stride = int(custom_config.get("window_stride") or 0)
    if not stride:
        return None
    budget = int(custom_config["seq_length"]) - 2
    return WindowSpec(budget=budget, stride=stride, max_windows=int(custom_config.get("max_windows") or 1))


def window_features(
    ids: tf.RaggedTensor,
    model_proto: bytes,
    seq_length: int,
    spec: WindowSpec,
    labels: tf.RaggedTensor | None = None,
) -> dict[str, tf.Tensor | tf.SparseTensor]:
    """Every window of each note's pieces `ids`, packed and concatenated: `window_token_ids`,
    `window_segment_ids`, `window_padding_mask`, each `num_windows * seq_length` values a note
    (variable length, so a short note costs one window); `num_pieces`, and whether the note was longer
    than `spec.cap` pieces (`windows_cut`: its pieces past the cap are in no window). With word
    `labels` (token classification), `window_token_labels` alike, and the whole note's labels up to
    the cap (`note_token_labels`, `[batch, cap]`, IGNORE past the note's end)."""
    special = SpecialIds.from_model_proto(model_proto)
    windows, note, _ = flat_windows(ids, spec)
    packed = pack(
        windows,
        seq_length=seq_length,
        cls_id=special.cls_id,
        sep_id=special.sep_id,
        pad_id=special.pad_id,
        dtype=tf.int64,
    )
    if labels is not None:
        label_windows, _, _ = flat_windows(labels, spec)
        packed["token_labels"] = pack_labels(label_windows, seq_length)
    rows = ids.nrows()
    outputs = {
        f"window_{name}": tf.RaggedTensor.from_value_rowids(tf.reshape(value, [-1, seq_length]), note, rows)
        .merge_dims(1, 2)
        .to_sparse()
        for name, value in packed.items()
    }
    lengths = tf.cast(ids.row_lengths(), tf.int64)
    outputs["num_windows"] = spec.count(lengths)
    outputs["num_pieces"] = lengths
    outputs["windows_cut"] = tf.cast(lengths > spec.cap, tf.int64)
    if labels is not None:
        outputs["note_token_labels"] = labels[:, : spec.cap].to_tensor(
            default_value=IGNORE, shape=[None, spec.cap]
        )
    return outputs


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
    task = custom_config.get("task", "note_classification")
    texts_b = _dense_strings(inputs[TEXT_B]) if task == PAIR_TASK else None
    outputs = note_features(texts, model_proto, int(custom_config["seq_length"]), texts_b)
    outputs.update(_sentence_features(inputs["sentences"], model_proto))
    seq_length, spec = int(custom_config["seq_length"]), window_spec(custom_config)
    if task == "token_classification":
        spans = {name: _ragged(inputs[name]) for name in ("span_starts", "span_ends", "span_types")}
        labels, ids = word_label_pieces(texts, spans, model_proto, list(custom_config["entity_types"]))
        outputs.update(token_label_features(labels, spans, seq_length))
        if spec is not None:
            outputs.update(window_features(ids, model_proto, seq_length, spec, labels))
    else:
        if spec is not None:
            ids = tokenize(make_tokenizer(model_proto), normalize_in_graph(texts))
            outputs.update(window_features(ids, model_proto, seq_length, spec))
        if task == MULTI_LABEL_TASK:
            outputs.update(_label_set(inputs["labels"], list(custom_config["label_names"])))
        else:
            priority = list(custom_config.get("label_priority") or [])
            outputs.update(
                _note_label(inputs["labels"], list(custom_config.get("label_names") or []), priority)
            )
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


def _note_label(
    labels: tf.Tensor | tf.SparseTensor, label_names: list[str], priority: list[str]
) -> dict[str, tf.Tensor]:
    """The single-label target, never picked by accident: a note's one label, or of several the one
    first in `priority` (labels it does not list rank after those it does); a note with several labels
    and no such first one is left out (-1) and counted in `label_ambiguous`. As an index in the
    configured label names, or else in a vocabulary of the training split's labels; -1 for none or
    another."""
    ragged = _ragged(labels)
    count = tf.cast(ragged.row_lengths(), tf.int64)
    unlisted = len(priority)
    # One more column than any row needs, so that a batch of notes without labels (serving's) has one.
    columns = tf.reduce_max(tf.concat([count, [0]], axis=0)) + 1
    ranks = tf.ragged.map_flat_values(_index_table(priority).lookup, ragged) if priority else None
    if ranks is not None:
        ranks = tf.ragged.map_flat_values(lambda r: tf.where(r < 0, tf.cast(unlisted, tf.int64), r), ranks)
        dense_ranks = ranks.to_tensor(default_value=unlisted + 1, shape=tf.stack([ragged.nrows(), columns]))
        best = tf.argmin(dense_ranks, axis=1, output_type=tf.int64)
        best_rank = tf.reduce_min(dense_ranks, axis=1)
        ties = tf.reduce_sum(tf.cast(tf.equal(dense_ranks, best_rank[:, None]), tf.int64), axis=1)
        decided = tf.equal(count, 1) | ((best_rank < unlisted) & tf.equal(ties, 1))
    else:
        best = tf.zeros_like(count)
        decided = tf.equal(count, 1)
    names = ragged.to_tensor(default_value="", shape=tf.stack([ragged.nrows(), columns]))
    chosen = tf.gather(names, best[:, None], batch_dims=1)[:, 0]
    chosen = tf.where(decided, chosen, "")
    if label_names:
        label = _index_table(label_names).lookup(chosen)
    else:
        vocabulary = tft.vocabulary(
            tf.boolean_mask(chosen, tf.not_equal(chosen, "")), vocab_filename=LABEL_VOCABULARY
        )
        label = tft.apply_vocabulary(chosen, vocabulary, default_value=-1)
    return {"label": label, "label_ambiguous": tf.cast((count > 1) & ~decided, tf.int64)}


def _label_set(labels: tf.Tensor | tf.SparseTensor, label_names: list[str]) -> dict[str, tf.Tensor]:
    """The multi-label target: 1 for each configured label the note carries, `[batch, labels]` int64;
    and how many of its labels are configured ones."""
    ids = tf.ragged.map_flat_values(_index_table(label_names).lookup, _ragged(labels))
    known = tf.ragged.boolean_mask(ids, ids >= 0)
    counts = tf.reduce_sum(tf.one_hot(known, len(label_names), dtype=tf.int64), axis=1)  # (batch, labels)
    hot = tf.minimum(counts, 1)
    return {LABEL_SET: tf.reshape(hot, [-1, len(label_names)]), "num_labels": known.row_lengths()}


def _dense_int(feature: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    if isinstance(feature, tf.SparseTensor):
        feature = tf.sparse.to_dense(feature, default_value=0)
    return tf.reshape(feature, [-1])
