"""Trainer "finetune": note classification, warm-started from the pretraining Trainer's model, exported
as a SavedModel that TF Serving and the Evaluator load.

Reads the Transform output (packed ALBERT inputs and the `label` index). The export's signatures:
    serving_default     text: string [batch] of raw notes -> probabilities [batch, classes] and
                        label_names [batch, classes], the class names in probability order (repeated
                        per row: TF Serving's batching splits every output along its first dimension)
    classify            inputs: serialized tf.Examples, each with its `text` -> classes [batch, classes],
                        scores [batch, classes] (TF Serving's Classify layout)
    predict_examples    examples: serialized tf.Examples -> probabilities (the Evaluator's signature)
    transform_features  examples: serialized tf.Examples -> the transformed features (the Evaluator's
                        preprocessing: labels and slicing keys)
Raw text goes through the Transform graph itself, so serving tokenizes exactly as training did. The
model is saved twice (see `components/model_layout.py`): with every signature in the artifact's
serving folder, which TFX's Evaluator loads, and with the client signatures only (every output dense
and batched) in the client copy beside it, which ServingCheck checks and the Pusher pushes.
Warmup requests for TF Serving are written to assets.extra.

Two phases, because Keras 3 fixes its backend at its first import and this process is TensorFlow's
(TF Transform, TFX and the export need it), while the library trains fastest on a GPU under JAX:
    training    `train(job)`: builds the classifier, fine-tunes it (`albert_keras.finetune_loop`,
                resumable from its checkpoint folder) and saves the weights of the best evaluated step
                to a file. The job is JSON (`training_job`: the example files, the Transform output,
                the task and labels, batch, steps, recipe, windows, the base model, where the run
                starts from, the checkpoint folder and the output paths). With custom_config
                `training_backend` "jax" (or "auto" on a machine with one GPU and JAX; see
                components/trainer/child.py) it runs in a child process under KERAS_BACKEND=jax, whose
                TensorFlow only reads the examples, on the CPU; with "tensorflow" (the default on CPU,
                and "auto"'s choice for several GPUs or a multi-worker TF_CONFIG cluster) in this
                process, under the tf.distribute strategy (several GPUs, several workers) as before. A
                killed child leaves its checkpoints, and the Trainer's next attempt resumes from them.
    export      always here, under TensorFlow: the classifier rebuilt on the pretrained backbone with
                the saved weights loaded; everything after training (the run files, the eval
                predictions, the reading of a note, the thresholds, the SavedModels) is computed from
                it, so the exported model answers what the trained one does whichever backend trained.
training.json records the backend that trained (`backend`) and the step a resumed run started from
(`resumed_from_step`, 0 for a fresh start).

custom_config: batch_size, learning_rate, seed, label_names (optional: the classes in id order; else
the Transform's label vocabulary), task ("note_classification", the default,
"multi_label_classification", "text_pair_classification" or "token_classification"), and the
recipe (`albert_keras.finetune_loop`): epochs (> 0: passes over the training split instead of the
TFX train steps), warmup_fraction, eval_every (steps; 0: ten evaluations), patience, clipnorm, recipe
("best" or "plain"), and training_backend (above). Every evaluation scores the whole eval split with the
task's own metric (micro-F1 at thresholds chosen on it, accuracy, or entity F1 on words), and the best
one's weights are exported. The model run folder records the run (training.json: the settings, every
evaluation with its loss and learning rate, the best step, early stopping) and the exported model's answers
on the eval split (eval_predictions.npz: probabilities and targets of notes, with their slicing
keys; gold and predicted word labels of tokens), which the model card reads; TensorBoard logs hold
the loss and the eval metric curves.

Warm start: with `warm_start_model_dir` (the last blessed model, made from other examples; see
pipeline/resolvers.py) whose task, label names, vocabulary and backbone are this run's, training
starts from its fine-tuned weights instead of the pretrained backbone and a new head; otherwise from
the pretrained backbone, and training.json's `start` says which and why. Every export also writes its
Keras weights (`model_layout.KERAS_DIR`) for the next run's warm start.

Text-pair classification (task="text_pair_classification") trains as note classification on
`[CLS] text [SEP] text_b [SEP]`; its serving_default takes `text` and `text_b`, string [batch] each,
and its classify signature tf.Examples holding both.

Multi-label classification (task="multi_label_classification") trains independent sigmoids on the
Transform's `label_set`, then chooses each label's threshold for its F1 on the whole eval split
(`components/thresholds.py`) and stores them in the model. Its serving_default answers probabilities
[batch, labels], predicted [batch, labels] (1 where the probability reaches the label's threshold)
and label_names; classify answers the probabilities as scores; predict_examples answers
decision_scores, the probabilities mapped so that 0.5 is each label's threshold (the Evaluator's cut).

Note tasks read with windows (window_stride) pool the windows' logits by mean or max: window_pooling,
or with "auto" the one with the higher eval figure. The model run folder's reading.json records the
choice, each pooling's figure on the eval split, and the multi-label thresholds.

Token classification (task="token_classification", with entity_types and tokenizer_dir, which
TokenizedTrainer adds) trains an AlbertTokenClassifier on the Transform's `token_labels` (the BIO id of
each word at its first piece) and exports:
    serving_default     text: string [batch] -> the entities of each text, read at its words' first
                        pieces with conlleval's rules (`word_entities.decode_entities`):
                            num_entities    int64 [batch]
                            entity_starts   int64 [batch, max entities]: Unicode code point offsets
                            entity_ends     into the exact string sent (end exclusive); -1 past
                                            num_entities
                            entity_types    string [batch, max entities] ("" past num_entities)
                            entity_scores   float32 [batch, max entities]: mean probability of the
                                            entity's word labels
                        and the per-piece reading, for tools that window text themselves (the
                        de-identification tagger): label_ids [batch, seq] (argmax per packed
                        position), piece_starts / piece_ends [batch, seq] (UTF-8 byte offsets of each
                        position's piece in the text sent; -1 at [CLS], [SEP] and padding),
                        label_names [batch, labels]. Pieces past seq - 2 are not read.
    predict_examples, transform_features   as above, for the Evaluator
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from albert_keras import AlbertBackbone, AlbertClassifier, AlbertTokenClassifier, bio_labels
from albert_keras.finetune_loop import eval_interval, finetune, finetune_optimizer, warmup_linear_decay
from albert_keras.pretrain_loop import CHECKPOINT_STATE
from components import model_layout
from components.scores import entity_scores
from components.sentencepiece_tokenizer import windows as windows_lib
from components.sentencepiece_tokenizer.token_labels import pack_labels
from components.sentencepiece_tokenizer.tokenize_graph import SpecialIds, make_tokenizer, pack
from components.sentencepiece_tokenizer.train import vocabulary_sha256
from components.sentencepiece_tokenizer.windows import WindowSpec
from components.sentencepiece_tokenizer.word_entities import decode_entities, word_starts
from components.thresholds import (
    BELOW_HALF,
    MAX_THRESHOLD,
    MIN_THRESHOLD,
    choose_thresholds,
    float32_thresholds,
)
from components.trainer import child
from components.trainer import common as trainer_common
from components.trainer.pretrain import PRETRAINER_FILE
from components.trainer.progress import ProgressFile
from components.transform_module import (
    LABEL_SET,
    LABEL_VOCABULARY,
    MULTI_LABEL_TASK,
    PAIR_TASK,
    TEXT_B,
    read_model_proto,
    window_spec,
)

#: The training phase, as `child.run_child` names it.
TRAIN_FUNCTION = "components.trainer.finetune:train"
#: In the Trainer's model run folder: the training child's job and result files.
CHILD_DIR = "training_child"

INPUTS = ("token_ids", "segment_ids", "padding_mask")
TEXT_FEATURE = "text"
CLIENT_SIGNATURES = ("serving_default", "classify")
LABEL = "label"
TOKEN_LABELS = "token_labels"
TOKEN_TASK = "token_classification"
#: How an op's error message says that it refused the client's input and is safe to show the client
#: (it names limits, never input text): the local model server passes such messages through.
REJECTED = "rejected: "
#: In the Trainer's model run folder: how a note task's model reads a note, chosen on the eval split
#: (window pooling and each pooling's eval figure, the multi-label thresholds).
READING_FILE = "reading.json"
#: In the Trainer's model run folder: how the run went (the recipe's settings, every evaluation, the best
#: step, early stopping), and the exported model's answers on the eval split, for the model card.
TRAINING_FILE = "training.json"
PREDICTIONS_FILE = "eval_predictions.npz"
#: The transformed features that slice the Evaluator's metrics, kept beside the eval predictions.
SLICE_FEATURES = ("note_type", "length_bucket")
#: How a note task pools its windows' logits into the note's.
POOLINGS = ("mean", "max")
#: The multi-label Evaluator signature's output (see MultiLabelServingModule).
DECISION_SCORES = "decision_scores"
WARMUP_NOTES = (
    "Chief complaint: chest pain for two days. No fever.",
    "The patient is a 45-year-old woman seen in follow-up after knee arthroscopy.",
    "MRI of the lumbar spine shows a disc bulge at L4-5 without stenosis.",
)
#: A pair model's second texts for the warmup requests, one per note.
WARMUP_PASSAGES = (
    "Does chest pain with a normal ECG rule out acute coronary syndrome?",
    "Is early mobilization after arthroscopy safe?",
    "Are disc bulges without stenosis a cause of chronic low back pain?",
)


def _dataset(
    files: list[str],
    feature_spec: dict,
    batch: int,
    seed: int | None,
    target: str = LABEL,
    windows: WindowSpec | None = None,
) -> tf.data.Dataset:
    """(inputs, target) batches. With `windows`, every window of a note is an example of its own: with
    the note's label for note tasks, with its own labels for tokens (`window_token_labels`)."""
    names = [f"window_{k}" for k in INPUTS] if windows else list(INPUTS)
    target_name = f"window_{target}" if windows and target == TOKEN_LABELS else target
    spec = {k: feature_spec[k] for k in (*names, target_name)}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if seed is not None:
        dataset = dataset.shuffle(10_000, seed=seed)
    dataset = dataset.map(lambda raw: tf.io.parse_single_example(raw, spec))
    if target == LABEL:
        dataset = dataset.filter(lambda e: e[LABEL] >= 0)  # notes without a label do not train
    # Multi-hot targets feed a binary cross-entropy, which takes floats.
    dtype = tf.float32 if target == LABEL_SET else tf.int32
    if windows is None:
        return dataset.map(
            lambda e: ({k: tf.cast(e[k], tf.int32) for k in INPUTS}, tf.cast(e[target], dtype))
        ).batch(batch)

    def note_windows(example):
        seq = feature_spec["token_ids"].shape[0]
        inputs = {k: tf.reshape(tf.cast(_dense(example[f"window_{k}"]), tf.int32), [-1, seq]) for k in INPUTS}
        count = tf.shape(inputs["token_ids"])[0]
        if target == TOKEN_LABELS:
            labels = tf.reshape(tf.cast(_dense(example[target_name]), dtype), [-1, seq])
        else:
            labels = tf.repeat(tf.cast(example[target], dtype)[None], count, axis=0)
        return tf.data.Dataset.from_tensor_slices((inputs, labels))

    return dataset.flat_map(note_windows).batch(batch)


def _pretrained_backbone(base_model: str | None, model_run_dir: str) -> AlbertBackbone:
    """The backbone of the pretraining Trainer's model in `base_model` (its vocabulary is the
    tokenizer's), loaded from a copy in the model run folder."""
    if not base_model:
        raise ValueError("the fine-tuning Trainer needs base_model: the pretraining Trainer's model")
    local = os.path.join(model_run_dir, PRETRAINER_FILE)
    tf.io.gfile.makedirs(model_run_dir)
    tf.io.gfile.copy(os.path.join(base_model, PRETRAINER_FILE), local, overwrite=True)
    return keras.saving.load_model(local, safe_mode=True).backbone


WEIGHTS_FILE = "classifier.weights.h5"
WEIGHTS_INFO_FILE = "classifier.json"


def weights_info(task: str, names: list[str], model_proto: bytes, backbone: keras.Model) -> dict:
    """What a later run must share with this model to start from its weights."""
    return {
        "task": task,
        "label_names": list(names),
        "vocabulary_sha256": vocabulary_sha256(model_proto),
        "backbone": backbone.get_config(),
    }


def warm_start(warm_start_dir: str | None, info: dict) -> tuple[str | None, str]:
    """The weights file to start from (or None) and how the run starts, given the warm-start model's
    folder and this run's `weights_info`."""
    if not warm_start_dir:
        return None, "from the pretrained backbone"
    folder = os.path.join(warm_start_dir, model_layout.KERAS_DIR)
    info_path = os.path.join(folder, WEIGHTS_INFO_FILE)
    if not tf.io.gfile.exists(info_path):
        return None, f"from the pretrained backbone (the last blessed model has no {model_layout.KERAS_DIR})"
    with tf.io.gfile.GFile(info_path) as f:
        theirs = json.load(f)
    for key, what in (
        ("task", "task"),
        ("label_names", "label set"),
        ("vocabulary_sha256", "vocabulary"),
        ("backbone", "backbone"),
    ):
        if theirs.get(key) != json.loads(json.dumps(info[key])):
            return None, f"from the pretrained backbone (the last blessed model has another {what})"
    return os.path.join(folder, WEIGHTS_FILE), f"warm start from the last blessed model {warm_start_dir}"


def _raw_features(raw_spec: dict, texts: tf.Tensor, texts_b: tf.Tensor | None = None) -> dict:
    """Raw features as ingestion would give them, for a batch of note texts (and second texts): text
    and its length filled in, every other feature empty."""
    rows = tf.shape(texts, out_type=tf.int64)[0]
    given = {"text": texts, "num_chars": tf.cast(tf.strings.length(texts, unit="UTF8_CHAR"), tf.int64)}
    if texts_b is not None:
        given[TEXT_B] = texts_b
    features = {}
    for name, spec in raw_spec.items():
        if isinstance(spec, tf.io.VarLenFeature):
            if name in given:
                indices = tf.stack([tf.range(rows), tf.zeros([rows], tf.int64)], axis=1)
                features[name] = tf.SparseTensor(indices, tf.cast(given[name], spec.dtype), [rows, 1])
            else:
                empty = tf.zeros([0], spec.dtype)
                features[name] = tf.SparseTensor(tf.zeros([0, 2], tf.int64), empty, tf.stack([rows, 0]))
        else:
            shape = tf.concat([[rows], tf.constant(spec.shape, tf.int64)], 0)
            default = given.get(
                name, tf.zeros(shape, spec.dtype) if spec.dtype != tf.string else tf.fill(shape, "")
            )
            features[name] = tf.reshape(tf.cast(default, spec.dtype), shape)
    return features


def lenient_spec(raw_spec: dict) -> dict:
    """The raw feature spec with a default for every single-valued feature but the note text, so that a
    tf.Example that holds only `text` parses: TF Serving's Classify clients send the note alone, not
    ingestion's ids and counts. A missing feature then reads as "" or 0, which only the slicing keys
    look at; a missing `text` (or a pair's `text_b`) stays an error naming it, never an empty note."""
    spec = {}
    for name, feature in raw_spec.items():
        required = name in (TEXT_FEATURE, TEXT_B)
        if isinstance(feature, tf.io.FixedLenFeature) and feature.default_value is None and not required:
            empty = "" if feature.dtype == tf.string else 0
            feature = tf.io.FixedLenFeature(
                feature.shape, feature.dtype, default_value=tf.fill(feature.shape, empty).numpy()
            )
        spec[name] = feature
    return spec


def _dense(feature: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    return tf.sparse.to_dense(feature) if isinstance(feature, tf.SparseTensor) else feature


def window_batch(transformed: dict, seq_length: int) -> tuple[dict, tf.Tensor, tf.Tensor]:
    """The windows of a batch of notes, from the Transform's window features: the model's inputs for
    the windows that exist, `[windows, seq_length]` int32 (a note's windows in order), each window's
    note `[windows]`, and the number of notes."""
    dense = {name: tf.cast(_dense(transformed[f"window_{name}"]), tf.int32) for name in INPUTS}
    notes = tf.shape(dense["token_ids"], out_type=tf.int64)[0]
    flat = {name: tf.reshape(value, [-1, seq_length]) for name, value in dense.items()}
    per_note = tf.shape(flat["token_ids"], out_type=tf.int64)[0] // tf.maximum(notes, 1)
    exists = tf.reduce_any(flat["padding_mask"] > 0, axis=1)  # empty windows pad the shorter notes
    note = tf.boolean_mask(tf.range(tf.size(exists, out_type=tf.int64)) // tf.maximum(per_note, 1), exists)
    return {name: tf.boolean_mask(value, exists) for name, value in flat.items()}, note, notes


def cap_message(spec: WindowSpec) -> str:
    """What a client is told when its note is longer than the model reads whole (INVALID_ARGUMENT)."""
    return (
        f"{REJECTED}the note is longer than this model reads: at most {spec.cap} SentencePiece pieces "
        f"({spec.max_windows} windows; about {spec.cap * 4} characters of English clinical text); "
        "split it and send the parts"
    )


class ServingModule(tf.Module):
    """The classifier with the Transform graph in front of it, as TF Serving and TFMA call it. With
    `windows`, a note is read in overlapping windows whose logits are pooled (`pooling`: mean or max),
    and a note longer than the windows' cap is refused (INVALID_ARGUMENT, `cap_message`)."""

    def __init__(
        self,
        classifier: keras.Model,
        tft_output: tft.TFTransformOutput,
        label_names: list[str],
        windows: WindowSpec | None = None,
        pooling: str = "mean",
    ):
        super().__init__()
        self.classifier = classifier
        self.tft_layer = tft_output.transform_features_layer()
        self.raw_spec = dict(tft_output.raw_feature_spec())
        self.example_spec = lenient_spec(self.raw_spec)
        self.label_names = tf.constant(label_names)
        self.seq_length = int(tft_output.transformed_feature_spec()["token_ids"].shape[0])
        self.windows, self.pooling = windows, pooling

    def _logits(self, transformed: dict) -> tf.Tensor:
        if self.windows is None:
            logits = self.classifier({k: tf.cast(transformed[k], tf.int32) for k in INPUTS}, training=False)
            return tf.cast(logits, tf.float32)
        inputs, note, notes = window_batch(transformed, self.seq_length)
        return windows_lib.pool(
            tf.cast(self.classifier(inputs, training=False), tf.float32), note, notes, self.pooling
        )

    def _probabilities(self, transformed: dict) -> tf.Tensor:
        return tf.nn.softmax(self._logits(transformed), axis=-1)

    def _client_features(self, raw: dict) -> dict:
        """The Transform's features for a client's notes, refusing a note past the windows' cap."""
        transformed = self.tft_layer(raw)
        if self.windows is not None:
            cut = tf.reduce_any(tf.not_equal(transformed["windows_cut"], 0))
            tf.debugging.Assert(tf.logical_not(cut), [cap_message(self.windows)])
        return transformed

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        probabilities = self._probabilities(self._client_features(_raw_features(self.raw_spec, text)))
        return {"probabilities": probabilities, "label_names": self._label_rows(tf.shape(text)[0])}

    def _label_rows(self, rows: tf.Tensor) -> tf.Tensor:
        return tf.tile(self.label_names[None, :], [rows, 1])  # (batch, classes)

    def _parse(self, serialized):
        return tf.io.parse_example(serialized, self.example_spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        scores = self._probabilities(self._client_features(self._parse(inputs)))
        return {"classes": self._label_rows(tf.shape(scores)[0]), "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(self, examples):
        return {"probabilities": self._probabilities(self.tft_layer(self._parse(examples)))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        return self.tft_layer(self._parse(examples))


class PairServingModule(ServingModule):
    """Text-pair classification: serving_default takes two strings per example, `text` and `text_b`
    (a question and its passage), packed `[CLS] text [SEP] text_b [SEP]` by the Transform graph;
    classify takes tf.Examples holding both."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="text"),
            tf.TensorSpec([None], tf.string, name="text_b"),
        ]
    )
    def serve_text(self, text, text_b):
        tf.debugging.assert_equal(
            tf.shape(text), tf.shape(text_b), message="text and text_b must hold as many strings"
        )
        probabilities = self._probabilities(self._client_features(_raw_features(self.raw_spec, text, text_b)))
        return {"probabilities": probabilities, "label_names": self._label_rows(tf.shape(text)[0])}


class MultiLabelServingModule(ServingModule):
    """A multi-label classifier: independent sigmoids, and per-label thresholds chosen on the eval
    split (`components/thresholds.py`) that travel inside the model. serving_default answers every
    label's probability and the labels predicted; the Evaluator's predict_examples answers decision
    scores, in which 0.5 is each label's threshold."""

    def __init__(
        self,
        classifier: keras.Model,
        tft_output: tft.TFTransformOutput,
        label_names: list[str],
        thresholds: np.ndarray,
        windows: WindowSpec | None = None,
        pooling: str = "mean",
    ):
        super().__init__(classifier, tft_output, label_names, windows, pooling)
        thresholds = np.clip(np.asarray(thresholds, np.float32), MIN_THRESHOLD, MAX_THRESHOLD)
        self.thresholds = tf.Variable(thresholds, trainable=False, name="thresholds")

    def _probabilities(self, transformed: dict) -> tf.Tensor:
        return tf.sigmoid(self._logits(transformed))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        probabilities = self._probabilities(self._client_features(_raw_features(self.raw_spec, text)))
        return {
            "probabilities": probabilities,
            "predicted": tf.cast(probabilities >= self.thresholds, tf.int64),
            "label_names": self._label_rows(tf.shape(text)[0]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(self, examples):
        probabilities = self._probabilities(self.tft_layer(self._parse(examples)))
        # thresholds.decision_scores, in graph: each label's threshold goes to 0.5.
        t = self.thresholds
        below = tf.minimum(0.5 * probabilities / t, BELOW_HALF)  # under 0.5 even where float32 rounds up
        above = 0.5 + 0.5 * (probabilities - t) / (1.0 - t)
        return {DECISION_SCORES: tf.where(probabilities < t, below, above)}


class TokenServingModule(ServingModule):
    """The token classifier behind the client's own text; see the module docstring. Classify has no
    per-token form, so only serve_text, predict_examples and transform_features are exported.

    serve_text tokenizes the request string itself rather than the Transform's normalized copy, so that
    every offset indexes what the client sent: SentencePiece's normalizer gives the same pieces on raw
    and normalized text (every MTSamples note; `word_entities` says why), so the model reads what it
    was trained on. Words are read at their first piece, as the Transform labels them. With `windows`,
    each piece is labelled in the window where it sits most centrally (`windows.stitch`).
    """

    def __init__(
        self,
        tagger: keras.Model,
        tft_output: tft.TFTransformOutput,
        label_names: list[str],
        model_proto: bytes,
        windows: WindowSpec | None = None,
    ):
        super().__init__(tagger, tft_output, label_names, windows)
        self.tokenizer = make_tokenizer(model_proto)
        self.special = SpecialIds.from_model_proto(model_proto)
        self.model_proto = model_proto
        self.entity_types = [name[2:] for name in label_names if name.startswith("B-")]
        budget = self.seq_length - 2  # the pieces that fit between [CLS] and [SEP]
        # Without windows, one: the first `budget` pieces.
        self.reading = windows or WindowSpec(budget=budget, stride=budget, max_windows=1)

    def _stitched(self, window_inputs: dict, lengths: tf.Tensor) -> tf.RaggedTensor:
        """Label probabilities of each note's pieces `[notes, (pieces), labels]`, from the model's
        probabilities over its windows (in `windows.flat_windows` order)."""
        logits = self.classifier(window_inputs, training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)  # (windows, seq, labels)
        pieces = probabilities[:, 1 : self.reading.budget + 1]  # the pieces sit at 1..n, as `pack` puts them
        return windows_lib.stitch(pieces, lengths, self.reading)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        ids, starts, ends = self.tokenizer.tokenize_with_offsets(text)
        if self.windows is not None:
            fits = tf.reduce_all(ids.row_lengths() <= self.windows.cap)
            tf.debugging.Assert(fits, [cap_message(self.windows)])
        cap = self.reading.cap
        ids, starts, ends = ids[:, :cap], starts[:, :cap], ends[:, :cap]
        windows, _, _ = windows_lib.flat_windows(ids, self.reading)
        special = self.special
        packed = pack(
            windows,
            seq_length=self.seq_length,
            cls_id=special.cls_id,
            sep_id=special.sep_id,
            pad_id=special.pad_id,
        )
        probabilities = self._stitched(packed, ids.row_lengths())  # (batch, (pieces), labels)
        label_ids = tf.ragged.map_flat_values(tf.argmax, probabilities, axis=-1)
        scores = tf.ragged.map_flat_values(tf.reduce_max, probabilities, axis=-1)
        entities = decode_entities(
            text, starts, ends, word_starts(ids, self.model_proto), label_ids, scores, self.entity_types
        )
        # Positions as `pack` lays out one sequence of the pieces read: 1..n, -1 offsets elsewhere.
        width = cap + 2
        return {
            **entities,
            "label_ids": pack_labels(label_ids, width, ignore_label=0),
            "piece_starts": pack_labels(tf.cast(starts, tf.int64), width, ignore_label=-1),
            "piece_ends": pack_labels(tf.cast(ends, tf.int64), width, ignore_label=-1),
            "label_names": self._label_rows(tf.shape(text)[0]),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(self, examples):
        transformed = self.tft_layer(self._parse(examples))
        if self.windows is None:
            return {"probabilities": self._probabilities(transformed)}
        inputs, _, _ = window_batch(transformed, self.seq_length)
        stitched = self._stitched(inputs, transformed["num_pieces"])
        labels = len(self.entity_types) * 2 + 1
        # The whole note's pieces, as `note_token_labels` lays out their labels.
        return {"probabilities": stitched.to_tensor(0.0, shape=[None, self.windows.cap, labels])}


def write_warmup_requests(export_dir: str, pairs: bool = False) -> None:
    """`assets.extra/tf_serving_warmup_requests`: Predict requests that TF Serving replays on load
    (with a second text per note for a pair model)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    folder = os.path.join(export_dir, "assets.extra")
    tf.io.gfile.makedirs(folder)
    with tf.io.TFRecordWriter(os.path.join(folder, "tf_serving_warmup_requests")) as writer:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(signature_name="serving_default"),
            inputs={"text": tf.make_tensor_proto(list(WARMUP_NOTES), dtype=tf.string)},
        )
        if pairs:
            request.inputs[TEXT_B].CopyFrom(tf.make_tensor_proto(list(WARMUP_PASSAGES), dtype=tf.string))
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())


def label_names(custom: dict, tft_output: tft.TFTransformOutput) -> list[str]:
    """The classes in id order: the configured names, or the Transform's label vocabulary."""
    if custom.get("label_names"):
        return list(custom["label_names"])
    return [name.decode() for name in tft_output.vocabulary_by_name(LABEL_VOCABULARY)]


def serving_module(
    model: keras.Model,
    tft_output: tft.TFTransformOutput,
    names: list[str],
    *,
    model_proto: bytes | None = None,
    thresholds: np.ndarray | None = None,
    pairs: bool = False,
    windows: WindowSpec | None = None,
    pooling: str = "mean",
) -> ServingModule:
    """The module to export for the task: a token classifier (given the tokenizer's `model_proto`,
    for piece offsets), a multi-label one (given its `thresholds`), a text-pair one, or a note one.
    `windows` and `pooling`: how the model reads a note longer than one sequence."""
    if thresholds is not None:
        return MultiLabelServingModule(model, tft_output, names, thresholds, windows, pooling)
    if pairs:
        return PairServingModule(model, tft_output, names)
    if model_proto is None:
        return ServingModule(model, tft_output, names, windows, pooling)
    return TokenServingModule(model, tft_output, names, model_proto, windows)


def export(module: ServingModule, export_dir: str, eval_dir: str | None = None) -> None:
    """The SavedModel TF Serving loads (client signatures) in `export_dir`, and the one the Evaluator
    loads (all signatures) in `eval_dir`; a token classifier gets no Classify signature."""
    signatures = {"serving_default": module.serve_text}
    if not isinstance(module, TokenServingModule):
        signatures["classify"] = module.classify
    signatures.update(predict_examples=module.predict_examples, transform_features=module.transform_features)
    save_serving_and_eval(module, signatures, export_dir, eval_dir)


def save_serving_and_eval(
    module: tf.Module, signatures: dict, serving_dir: str, eval_dir: str | None = None
) -> None:
    """Saves `module` twice: with only the CLIENT_SIGNATURES among `signatures` to `serving_dir` (with
    the Classify marking and warmup requests), and with all of them to `eval_dir` (when given)."""
    client = {name: fn for name, fn in signatures.items() if name in CLIENT_SIGNATURES}
    tf.saved_model.save(module, serving_dir, signatures=client)
    if "classify" in client:
        mark_classify_signature(serving_dir, "classify")
    write_warmup_requests(serving_dir, pairs=isinstance(module, PairServingModule))
    if eval_dir is not None:
        tf.saved_model.save(module, eval_dir, signatures=signatures)


def mark_classify_signature(export_dir: str, name: str) -> None:
    """Gives signature `name` TF Serving's Classify method name. `tf.saved_model.save` marks every
    signature as Predict; Classify requests are only routed to signatures marked for Classify (with
    an `inputs` string tensor of serialized tf.Examples, and `classes`/`scores` outputs)."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        meta_graph.signature_def[name].method_name = tf.saved_model.CLASSIFY_METHOD_NAME
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(saved_model.SerializeToString())


def _target(task: str) -> str:
    """The transformed feature that `task` trains on."""
    return TOKEN_LABELS if task == TOKEN_TASK else LABEL_SET if task == MULTI_LABEL_TASK else LABEL


def _metric(task: str) -> str:
    """The eval figure that picks the best step: entity F1 on words, micro-F1 or accuracy."""
    return "entity_f1" if task == TOKEN_TASK else "micro_f1" if task == MULTI_LABEL_TASK else "accuracy"


def _classifier(backbone: AlbertBackbone, task: str, num_labels: int) -> keras.Model:
    """A new head for `task` on `backbone`."""
    if task == TOKEN_TASK:
        return AlbertTokenClassifier(backbone, num_labels=num_labels)
    problem = "multi_label" if task == MULTI_LABEL_TASK else "single_label"
    return AlbertClassifier(backbone, num_labels, problem_type=problem)


def _job_windows(job: dict[str, Any]) -> WindowSpec | None:
    return WindowSpec(**job["windows"]) if job["windows"] else None


def training_job(
    fn_args, tft_output: tft.TFTransformOutput, strategy: tf.distribute.Strategy, precision: str
) -> dict[str, Any]:
    """Everything the training phase needs, as JSON values (`train`'s argument; the child reads it
    from a file). The caller adds how the run starts: `warm_start_weights` and `start`."""
    custom = dict(fn_args.custom_config)
    task = custom.get("task", "note_classification")
    if task == TOKEN_TASK:
        names = bio_labels(list(custom["entity_types"]))
    else:
        names = label_names(custom, tft_output)
    train_files = trainer_common.example_files(fn_args.train_files)
    windows = window_spec(custom)
    global_batch = int(custom["batch_size"]) * strategy.num_replicas_in_sync
    steps = _training_steps(
        custom,
        int(fn_args.train_steps),
        train_files,
        tft_output.transformed_feature_spec(),
        global_batch,
        _target(task),
        windows,
    )
    run_dir = fn_args.model_run_dir
    return {
        "task": task,
        "label_names": names,
        "transform_output": fn_args.transform_output,
        "train_files": train_files,
        "eval_files": trainer_common.example_files(fn_args.eval_files),
        "global_batch": global_batch,
        "seed": int(custom.get("seed", 0)),
        "steps": steps,
        "learning_rate": float(custom["learning_rate"]),
        "recipe": dataclasses.asdict(Recipe.from_custom(custom, steps)),
        "windows": dataclasses.asdict(windows) if windows is not None else None,
        "window_pooling": str(custom.get("window_pooling") or "auto"),
        "precision": precision,
        "base_model": fn_args.base_model,
        "model_run_dir": run_dir,
        "checkpoint_dir": trainer_common.resume_dir(run_dir, custom, train_files),
        "logs_dir": trainer_common.worker_path(strategy, os.path.join(run_dir, "logs")),
        # A scratch file on the non-chief workers of a multi-worker run: only the chief writes run_dir.
        "weights_path": trainer_common.worker_path(strategy, os.path.join(run_dir, WEIGHTS_FILE)),
    }


def train(job: dict[str, Any]) -> dict[str, Any]:
    """The training phase, under whichever Keras backend this process has: in the JAX child
    (`child.run_child(TRAIN_FUNCTION, ...)`) or in the Trainer's process. See `_train`."""
    if keras.backend.backend() == "tensorflow":
        return _train(job, trainer_common.distribution_strategy())
    # Before any TensorFlow op: here TensorFlow only reads the examples, and the GPUs are JAX's.
    tf.config.set_visible_devices([], "GPU")
    return _train(job, None)


def _train(job: dict[str, Any], strategy: tf.distribute.Strategy | None) -> dict[str, Any]:
    """Builds the classifier on the pretrained backbone (or the warm start's weights), fine-tunes it
    through `finetune` (resuming from job["checkpoint_dir"]), saves the weights it ends with (the best
    evaluated step's) to job["weights_path"], and returns the training record. `strategy`: the
    tf.distribute strategy to build and train under (TensorFlow), or None (any other backend)."""
    keras.mixed_precision.set_global_policy(job["precision"])
    feature_spec = tft.TFTransformOutput(job["transform_output"]).transformed_feature_spec()
    task, names, seed, steps = job["task"], job["label_names"], int(job["seed"]), int(job["steps"])
    train_files, eval_files, batch = job["train_files"], job["eval_files"], int(job["global_batch"])
    tokens, multi_label, target = task == TOKEN_TASK, task == MULTI_LABEL_TASK, _target(task)
    windows, recipe, run_dir = _job_windows(job), Recipe(**job["recipe"]), job["model_run_dir"]
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        keras.utils.set_random_seed(seed)
        classifier = _classifier(_pretrained_backbone(job["base_model"], run_dir), task, len(names))
        if job["warm_start_weights"]:
            local = os.path.join(run_dir, "warm_start_" + WEIGHTS_FILE)
            tf.io.gfile.copy(job["warm_start_weights"], local, overwrite=True)
            classifier.load_weights(local)
        schedule = warmup_linear_decay(float(job["learning_rate"]), steps, recipe.warmup_fraction)
        classifier.compile(optimizer=finetune_optimizer(schedule, clipnorm=recipe.clipnorm or None))

    if "label_ambiguous" in feature_spec:
        left_out = _count_ambiguous(train_files, feature_spec)
        logging.info(
            "%d training notes with several labels and no priority to choose one: left out", left_out
        )
    metric = _metric(task)

    def evaluate(model: keras.Model) -> float:
        if tokens:
            return _token_predictions(model, eval_files, feature_spec, batch, windows)["f1"]
        logits, targets, _ = _note_logits(model, eval_files, feature_spec, batch, target, windows)
        pooling, _, figures = choose_note_reading(logits, targets, multi_label, job["window_pooling"])
        return figures[pooling]

    resumed_from = _checkpoint_step(job["checkpoint_dir"])
    if resumed_from:
        logging.info("resuming fine-tuning from the checkpoint at step %d", resumed_from)
    result = finetune(
        classifier,
        lambda: _dataset(train_files, feature_spec, batch, seed, target, windows),
        total_steps=steps,
        evaluate=evaluate,
        eval_every=recipe.eval_every,
        checkpoint_dir=job["checkpoint_dir"],
        patience=recipe.patience,
        metric_name=metric,
        recipe=recipe.name,
        callbacks=[keras.callbacks.TensorBoard(log_dir=job["logs_dir"]), ProgressFile("finetune")],
        verbose=2,
    )
    logging.info("fine-tuning started %s", job["start"])
    logging.info(
        "fine-tuned %d of %d steps (%s); kept step %s with eval %s %s",
        result["steps_trained"],
        steps,
        "stopped early" if result["stopped_early"] else "to the end",
        result["best_step"],
        metric,
        result["best"],
    )
    classifier.save_weights(job["weights_path"])
    return {
        "task": task,
        "metric": metric,
        "seed": seed,
        "start": job["start"],
        "resumed_from_step": resumed_from,
        **recipe.record(),
        **result,
    }


def _checkpoint_step(checkpoint_dir: str) -> int:
    """The step of the checkpoint that `finetune` will resume from (0: none, a fresh start)."""
    path = os.path.join(checkpoint_dir, CHECKPOINT_STATE)
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return int(json.load(f)["step"])


def run_fn(fn_args) -> None:
    """The Trainer's entry point: the training phase (in the JAX child or in process, see
    `training_backend`), then the export phase in this process, under TensorFlow."""
    # Imported here: it brings in tfx.components (Beam among them), which the training child never needs.
    from components.with_tokenizer.executor import WARM_START_DIR_KEY

    custom = dict(fn_args.custom_config)
    backend = child.choose_backend(
        custom.get(child.BACKEND_KEY),
        len(tf.config.list_physical_devices("GPU")),
        trainer_common.cluster_size(),
    )
    if backend == "jax":
        child.leave_gpus_to_child()
    policy = trainer_common.set_precision()
    # Before any TF op: a multi-worker strategy starts this worker's collective server. The JAX child
    # distributes nothing, and the export needs no strategy.
    if backend == "tensorflow":
        strategy = trainer_common.distribution_strategy()
    else:
        strategy = tf.distribute.get_strategy()
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    job = training_job(fn_args, tft_output, strategy, policy)
    model_proto = read_model_proto(custom["tokenizer_dir"])
    backbone = _pretrained_backbone(fn_args.base_model, fn_args.model_run_dir)
    info = weights_info(job["task"], job["label_names"], model_proto, backbone)
    job["warm_start_weights"], job["start"] = warm_start(custom.get(WARM_START_DIR_KEY), info)
    logging.info(
        "fine-tuning on %d labels for %d steps, batch %d, %s, training under %s; %s",
        len(job["label_names"]),
        job["steps"],
        int(custom["batch_size"]),
        policy,
        backend,
        Recipe(**job["recipe"]),
    )
    if backend == "jax":
        workdir = os.path.join(fn_args.model_run_dir, CHILD_DIR)
        record = child.run_child(TRAIN_FUNCTION, job, workdir=workdir, backend="jax")
    else:
        record = _train(job, strategy)
    classifier = _classifier(backbone, job["task"], len(job["label_names"]))
    classifier.load_weights(job["weights_path"])
    _export_phase(fn_args, job, {**record, "backend": backend}, classifier, info, model_proto, strategy)


def _export_phase(
    fn_args,
    job: dict[str, Any],
    record: dict[str, Any],
    classifier: keras.Model,
    info: dict,
    model_proto: bytes,
    strategy: tf.distribute.Strategy,
) -> None:
    """Everything after training, under TensorFlow, from the trained weights loaded into `classifier`:
    the run files, the Keras folder for the next warm start, the eval predictions, the reading of a note
    (window pooling, multi-label thresholds) and the serving and eval SavedModels."""
    tft_output = tft.TFTransformOutput(job["transform_output"])
    feature_spec = tft_output.transformed_feature_spec()
    task, names, batch = job["task"], job["label_names"], int(job["global_batch"])
    eval_files, windows, metric = job["eval_files"], _job_windows(job), record["metric"]
    multi_label, target = task == MULTI_LABEL_TASK, _target(task)
    run_file = functools.partial(_write_run_file, strategy, fn_args.model_run_dir)
    run_file(TRAINING_FILE, json.dumps(record, indent=1))
    export_dir = trainer_common.worker_path(strategy, model_layout.client_copy_dir(fn_args.serving_model_dir))
    eval_dir = trainer_common.worker_path(strategy, fn_args.serving_model_dir)
    keras_dir = trainer_common.worker_path(strategy, model_layout.keras_dir(fn_args.serving_model_dir))
    tf.io.gfile.makedirs(keras_dir)
    tf.io.gfile.copy(job["weights_path"], os.path.join(keras_dir, WEIGHTS_FILE), overwrite=True)
    with tf.io.gfile.GFile(os.path.join(keras_dir, WEIGHTS_INFO_FILE), "w") as f:
        f.write(json.dumps(info, indent=1, sort_keys=True))
    if task == TOKEN_TASK:
        module = serving_module(classifier, tft_output, names, model_proto=model_proto, windows=windows)
        found = _token_predictions(classifier, eval_files, feature_spec, batch, windows)
        predictions = {k: found[k] for k in ("gold", "predicted", "confidence", "row_lengths")}
    else:
        logits, targets, slices = _note_logits(classifier, eval_files, feature_spec, batch, target, windows)
        pooling, _, figures = choose_note_reading(logits, targets, multi_label, job["window_pooling"])
        module = serving_module(
            classifier,
            tft_output,
            names,
            thresholds=np.full(len(names), 0.5) if multi_label else None,
            pairs=task == PAIR_TASK,
            windows=windows,
            pooling=pooling,
        )
        # The eval answers as the exported graph computes them (float32), so that the thresholds are
        # chosen on, and the model card scores, exactly what the Evaluator and clients get.
        probabilities = _module_probabilities(module, eval_files, feature_spec, batch)
        predictions = {"probabilities": probabilities, "targets": targets.astype(np.int64), **slices}
        reading = {
            "window_pooling": pooling if windows is not None else None,
            "eval_metric": metric,
            "eval_by_window_pooling": figures if windows is not None else None,
            "eval_notes": len(targets),
        }
        if multi_label:
            chosen = (
                choose_thresholds(probabilities, targets > 0) if len(targets) else np.full(len(names), 0.5)
            )
            thresholds = float32_thresholds(np.clip(chosen, MIN_THRESHOLD, MAX_THRESHOLD))
            module.thresholds.assign(thresholds)
            predictions["thresholds"] = thresholds
            reading["thresholds"] = {name: float(t) for name, t in zip(names, thresholds, strict=True)}
            logging.info(
                "per-label thresholds chosen on the eval split: %s", np.round(thresholds, 3).tolist()
            )
        run_file(READING_FILE, json.dumps(reading, indent=2, sort_keys=True))
        if windows is not None:
            logging.info("eval %s by window pooling: %s; exported: %s", metric, figures, pooling)
    _write_predictions(strategy, fn_args.model_run_dir, names, predictions)
    export(module, export_dir, eval_dir)


def _module_probabilities(
    module: ServingModule, files: list[str], feature_spec: dict, batch: int
) -> np.ndarray:
    """The probabilities [notes, labels] that `module`'s graph gives the transformed examples in
    `files` (its predict_examples, after the Transform)."""
    probabilities = tf.function(module._probabilities, reduce_retracing=True)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch)
    parts = [
        probabilities(features).numpy()
        for features in dataset.map(lambda raw: tf.io.parse_example(raw, feature_spec))
    ]
    width = len(module.label_names.numpy())
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, width), np.float32)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The fine-tuning recipe's settings, from the Trainer's custom_config (see the module docstring
    of `albert_keras.finetune_loop`)."""

    name: str
    warmup_fraction: float
    warmup_steps: int
    eval_every: int
    patience: int
    clipnorm: float

    @classmethod
    def from_custom(cls, custom: dict, steps: int) -> Recipe:
        every = int(custom.get("eval_every") or 0)
        evaluations = steps // every if every else 10
        warmup_fraction = float(custom.get("warmup_fraction", 0.1))
        return cls(
            name=str(custom.get("recipe") or "best"),
            warmup_fraction=warmup_fraction,
            warmup_steps=warmup_linear_decay(1.0, steps, warmup_fraction).warmup_steps,
            eval_every=eval_interval(steps, evaluations),
            patience=int(custom.get("patience", 0)),
            clipnorm=float(custom.get("clipnorm", 1.0)),
        )

    def record(self) -> dict:
        """The settings as TRAINING_FILE records them (the recipe's name under "recipe")."""
        settings = dataclasses.asdict(self)
        settings.pop("name")
        return settings


def _training_steps(
    custom: dict,
    train_steps: int,
    files: list[str],
    feature_spec: dict,
    batch: int,
    target: str,
    windows: WindowSpec | None,
) -> int:
    """train_steps, or with `epochs` > 0 that many passes over the training examples (counted once:
    windows included, unlabelled notes left out)."""
    epochs = float(custom.get("epochs") or 0.0)
    if epochs <= 0:
        return max(int(train_steps), 1)
    batches = int(_dataset(files, feature_spec, batch, None, target, windows).reduce(0, lambda n, _: n + 1))
    return max(1, math.ceil(epochs * batches))


def _write_run_file(strategy: tf.distribute.Strategy, model_run_dir: str, name: str, text: str) -> None:
    path = trainer_common.worker_path(strategy, os.path.join(model_run_dir, name))
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text.rstrip("\n") + "\n")


def _write_predictions(
    strategy: tf.distribute.Strategy, model_run_dir: str, names: list[str], arrays: dict
) -> None:
    """The exported model's answers on the eval split (PREDICTIONS_FILE), for the model card."""
    path = trainer_common.worker_path(strategy, os.path.join(model_run_dir, PREDICTIONS_FILE))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, label_names=np.asarray(names, dtype=str), **arrays)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _token_predictions(
    classifier: keras.Model, files: list[str], feature_spec: dict, batch: int, windows: WindowSpec | None
) -> dict[str, Any]:
    """Entity F1 on the eval split (`components.scores.entity_scores`, on words: each word's label at
    its first piece) and the word-level answers it comes from: gold, predicted and confidence (the
    predicted label's probability), flat, with row_lengths (words per row). With windows, each window
    is a row of its own: a word in the overlap of two windows is scored in both (the Evaluator, which
    stitches windows, scores it once)."""
    gold_rows, predicted_rows, confidence_rows = [], [], []
    for inputs, labels in _dataset(files, feature_spec, batch, None, TOKEN_LABELS, windows):
        probabilities = tf.nn.softmax(_call_classifier(classifier, inputs)).numpy()
        predicted = probabilities.argmax(axis=-1)
        for gold, row, probability in zip(labels.numpy(), predicted, probabilities.max(axis=-1), strict=True):
            words = gold >= 0
            gold_rows.append(gold[words])
            predicted_rows.append(row[words])
            confidence_rows.append(probability[words])
    scores = entity_scores(gold_rows, predicted_rows)

    def flat(rows, dtype):
        return np.concatenate(rows).astype(dtype) if rows else np.zeros([0], dtype)

    return {
        "f1": scores["f1"],
        "gold": flat(gold_rows, np.int64),
        "predicted": flat(predicted_rows, np.int64),
        "confidence": flat(confidence_rows, np.float32),
        "row_lengths": np.asarray([len(row) for row in gold_rows], np.int64),
    }


def _count_ambiguous(files: list[str], feature_spec: dict) -> int:
    """Notes that single-label training leaves out because several labels and no priority decide."""
    spec = {"label_ambiguous": feature_spec["label_ambiguous"]}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024)
    dataset = dataset.map(lambda raw: tf.io.parse_example(raw, spec)["label_ambiguous"])
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda total, x: total + tf.reduce_sum(x)))


def _note_logits(
    classifier: keras.Model,
    files: list[str],
    feature_spec: dict,
    batch: int,
    target: str,
    windows: WindowSpec | None,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """The note-level logits of every note in `files` with each window pooling (mean, max; the same
    logits when there are no windows), the notes' targets, and their SLICE_FEATURES."""
    names = [f"window_{k}" for k in INPUTS] if windows else list(INPUTS)
    slice_names = [k for k in SLICE_FEATURES if k in feature_spec]
    spec = {k: feature_spec[k] for k in (*names, target, *slice_names)}
    seq = feature_spec["token_ids"].shape[0]
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch)
    pooled: dict[str, list] = {how: [] for how in POOLINGS}
    slices: dict[str, list] = {name: [] for name in slice_names}
    targets = []
    for features in dataset.map(lambda raw: tf.io.parse_example(raw, spec)):
        if windows is None:
            logits = _call_classifier(classifier, {k: features[k] for k in INPUTS})
            for how in POOLINGS:
                pooled[how].append(logits)
        else:
            inputs, note, notes = window_batch(features, seq)
            logits = _call_classifier(classifier, inputs)
            for how in POOLINGS:
                pooled[how].append(windows_lib.pool(logits, note, notes, how).numpy())
        targets.append(features[target].numpy())
        for name in slice_names:
            slices[name].append(np.asarray(_dense(features[name])).reshape(-1))
    if not targets:
        empty = {how: np.zeros((0, classifier.output_shape[-1])) for how in POOLINGS}
        return empty, np.zeros((0,)), {}
    values = {name: np.concatenate(parts) for name, parts in slices.items()}
    if "note_type" in values:
        values["note_type"] = np.asarray(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values["note_type"]], dtype=str
        )
    return {how: np.concatenate(parts) for how, parts in pooled.items()}, np.concatenate(targets), values


def _call_classifier(classifier: keras.Model, inputs: dict) -> np.ndarray:
    """The classifier's outputs (float32) on int32 inputs, in inference mode, under any Keras backend.

    TensorFlow calls it eagerly, as it trains. Other backends take numpy, not tf.Tensors, and run it
    compiled (`predict_on_batch`) on the rows padded to a power of two (copies of the first row), so
    that the varying row counts of the last batch and of windows compile a few shapes only."""
    arrays = {k: np.asarray(v, np.int32) for k, v in inputs.items()}
    if keras.backend.backend() == "tensorflow":
        return np.asarray(classifier(arrays, training=False), np.float32)
    rows = len(arrays["token_ids"])
    if not rows:
        return np.zeros((0, *classifier.output_shape[1:]), np.float32)
    padded = 1 << (rows - 1).bit_length()
    arrays = {k: np.concatenate([v, np.repeat(v[:1], padded - rows, axis=0)]) for k, v in arrays.items()}
    return np.asarray(keras.ops.convert_to_numpy(classifier.predict_on_batch(arrays))[:rows], np.float32)


def _micro_f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    true_positives = float((predicted & labels).sum())
    total = float(predicted.sum() + labels.sum())
    return 2 * true_positives / total if total else 0.0


def choose_note_reading(
    logits: dict[str, np.ndarray], targets: np.ndarray, multi_label: bool, requested: str
) -> tuple[str, np.ndarray | None, dict[str, float]]:
    """The window pooling to export (the requested one, or with "auto" the one whose eval figure is
    higher: micro-F1 at thresholds chosen on the same notes for multi-label, accuracy otherwise; mean
    on a tie), the multi-label thresholds for it, and the eval figure of each pooling."""
    figures, chosen_thresholds = {}, {}
    for how, values in logits.items():
        if multi_label:
            probabilities = 1 / (1 + np.exp(-values))
            labels = targets.astype(bool)
            chosen_thresholds[how] = choose_thresholds(probabilities, labels) if len(labels) else None
            cut = chosen_thresholds[how] if chosen_thresholds[how] is not None else 0.5
            figures[how] = _micro_f1(probabilities >= cut, labels)
        else:
            labelled = targets >= 0
            right = values[labelled].argmax(axis=-1) == targets[labelled]
            figures[how] = float(right.mean()) if labelled.any() else 0.0
    pooling = (
        requested if requested != "auto" else max(POOLINGS, key=lambda how: (figures[how], how == "mean"))
    )
    thresholds = chosen_thresholds.get(pooling) if multi_label else None
    if multi_label and thresholds is None:
        thresholds = np.full(targets.shape[-1] if targets.ndim == 2 else 1, 0.5)
    return pooling, thresholds, figures
