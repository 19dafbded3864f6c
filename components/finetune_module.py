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

custom_config: batch_size, learning_rate, eval_steps, seed, label_names (optional: the classes in id
order; else the Transform's label vocabulary), task ("note_classification", the default, or
"token_classification").

Token classification (task="token_classification", with entity_types and tokenizer_dir, which
TokenizedTrainer adds) trains an AlbertTokenClassifier on the Transform's `token_labels` (BIO ids per
packed position) and exports:
    serving_default     text: string [batch] -> probabilities [batch, seq, labels], label_ids
                        [batch, seq] (argmax), piece_starts / piece_ends [batch, seq] (UTF-8 byte
                        offsets of each position's piece in normalized_text; -1 at [CLS], [SEP] and
                        padding), normalized_text [batch] (the text after in-graph NFKC and space
                        normalization, which the offsets index), label_names [batch, labels]
    predict_examples, transform_features   as above, for the Evaluator
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging

from albert_keras import AlbertBackbone, AlbertClassifier, AlbertTokenClassifier, bio_labels
from albert_keras.pretrain_loop import pretrain
from components import model_layout, trainer_common
from components.pretrain_module import PRETRAINER_FILE
from components.sentencepiece_tokenizer.token_labels import pack_labels
from components.sentencepiece_tokenizer.tokenize_graph import make_tokenizer
from components.transform_module import LABEL_VOCABULARY, normalize_in_graph, read_model_proto

INPUTS = ("token_ids", "segment_ids", "padding_mask")
TEXT_FEATURE = "text"
CLIENT_SIGNATURES = ("serving_default", "classify")
LABEL = "label"
TOKEN_LABELS = "token_labels"
TOKEN_TASK = "token_classification"
WARMUP_NOTES = (
    "Chief complaint: chest pain for two days. No fever.",
    "The patient is a 45-year-old woman seen in follow-up after knee arthroscopy.",
    "MRI of the lumbar spine shows a disc bulge at L4-5 without stenosis.",
)


def _dataset(
    files: list[str], feature_spec: dict, batch: int, seed: int | None, target: str = LABEL
) -> tf.data.Dataset:
    spec = {k: feature_spec[k] for k in (*INPUTS, target)}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if seed is not None:
        dataset = dataset.shuffle(10_000, seed=seed)
    dataset = dataset.map(lambda raw: tf.io.parse_single_example(raw, spec))
    if target == LABEL:
        dataset = dataset.filter(lambda e: e[LABEL] >= 0)  # notes without a label do not train
    return dataset.map(
        lambda e: ({k: tf.cast(e[k], tf.int32) for k in INPUTS}, tf.cast(e[target], tf.int32))
    ).batch(batch)


def _pretrained_backbone(fn_args) -> AlbertBackbone:
    """The backbone of the pretraining Trainer's model (its vocabulary is the tokenizer's)."""
    if not fn_args.base_model:
        raise ValueError("the fine-tuning Trainer needs base_model: the pretraining Trainer's model")
    local = os.path.join(fn_args.model_run_dir, PRETRAINER_FILE)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    tf.io.gfile.copy(os.path.join(fn_args.base_model, PRETRAINER_FILE), local, overwrite=True)
    return keras.saving.load_model(local, safe_mode=True).backbone


def _raw_features(raw_spec: dict, texts: tf.Tensor) -> dict:
    """Raw features as ingestion would give them, for a batch of note texts: text and its length
    filled in, every other feature empty."""
    rows = tf.shape(texts, out_type=tf.int64)[0]
    given = {"text": texts, "num_chars": tf.cast(tf.strings.length(texts, unit="UTF8_CHAR"), tf.int64)}
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
    look at; a missing `text` stays an error naming it, never an empty note."""
    spec = {}
    for name, feature in raw_spec.items():
        required = name == TEXT_FEATURE
        if isinstance(feature, tf.io.FixedLenFeature) and feature.default_value is None and not required:
            empty = "" if feature.dtype == tf.string else 0
            feature = tf.io.FixedLenFeature(
                feature.shape, feature.dtype, default_value=tf.fill(feature.shape, empty).numpy()
            )
        spec[name] = feature
    return spec


class ServingModule(tf.Module):
    """The classifier with the Transform graph in front of it, as TF Serving and TFMA call it."""

    def __init__(self, classifier: keras.Model, tft_output: tft.TFTransformOutput, label_names: list[str]):
        super().__init__()
        self.classifier = classifier
        self.tft_layer = tft_output.transform_features_layer()
        self.raw_spec = dict(tft_output.raw_feature_spec())
        self.example_spec = lenient_spec(self.raw_spec)
        self.label_names = tf.constant(label_names)

    def _probabilities(self, transformed: dict) -> tf.Tensor:
        logits = self.classifier({k: tf.cast(transformed[k], tf.int32) for k in INPUTS}, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        probabilities = self._probabilities(self.tft_layer(_raw_features(self.raw_spec, text)))
        return {"probabilities": probabilities, "label_names": self._label_rows(tf.shape(text)[0])}

    def _label_rows(self, rows: tf.Tensor) -> tf.Tensor:
        return tf.tile(self.label_names[None, :], [rows, 1])  # (batch, classes)

    def _parse(self, serialized):
        return tf.io.parse_example(serialized, self.example_spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        scores = self._probabilities(self.tft_layer(self._parse(inputs)))
        return {"classes": self._label_rows(tf.shape(scores)[0]), "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(self, examples):
        return {"probabilities": self._probabilities(self.tft_layer(self._parse(examples)))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
        return self.tft_layer(self._parse(examples))


class TokenServingModule(ServingModule):
    """The token classifier with the Transform graph in front of it; see the module docstring. Its
    probabilities are per position, (batch, seq, labels); Classify has no per-token form, so only
    serve_text, predict_examples and transform_features are exported."""

    def __init__(
        self,
        tagger: keras.Model,
        tft_output: tft.TFTransformOutput,
        label_names: list[str],
        model_proto: bytes,
    ):
        super().__init__(tagger, tft_output, label_names)
        self.tokenizer = make_tokenizer(model_proto)
        self.seq_length = int(tft_output.transformed_feature_spec()["token_ids"].shape[0])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        probabilities = self._probabilities(self.tft_layer(_raw_features(self.raw_spec, text)))
        normalized = normalize_in_graph(text)
        _, starts, ends = self.tokenizer.tokenize_with_offsets(normalized)
        # The pieces sit at packed positions 1..seq-2, as `pack` puts their ids.
        return {
            "probabilities": probabilities,
            "label_ids": tf.argmax(probabilities, axis=-1),
            "piece_starts": pack_labels(tf.cast(starts, tf.int64), self.seq_length, ignore_label=-1),
            "piece_ends": pack_labels(tf.cast(ends, tf.int64), self.seq_length, ignore_label=-1),
            "normalized_text": normalized,
            "label_names": self._label_rows(tf.shape(text)[0]),
        }


def write_warmup_requests(export_dir: str) -> None:
    """`assets.extra/tf_serving_warmup_requests`: Predict requests that TF Serving replays on load."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    folder = os.path.join(export_dir, "assets.extra")
    tf.io.gfile.makedirs(folder)
    with tf.io.TFRecordWriter(os.path.join(folder, "tf_serving_warmup_requests")) as writer:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(signature_name="serving_default"),
            inputs={"text": tf.make_tensor_proto(list(WARMUP_NOTES), dtype=tf.string)},
        )
        log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())


def label_names(custom: dict, tft_output: tft.TFTransformOutput) -> list[str]:
    """The classes in id order: the configured names, or the Transform's label vocabulary."""
    if custom.get("label_names"):
        return list(custom["label_names"])
    return [name.decode() for name in tft_output.vocabulary_by_name(LABEL_VOCABULARY)]


def export(
    model: keras.Model,
    tft_output: tft.TFTransformOutput,
    export_dir: str,
    names: list[str],
    model_proto: bytes | None = None,
    eval_dir: str | None = None,
) -> None:
    """The SavedModel TF Serving loads (client signatures) in `export_dir`, and the one the Evaluator
    loads (all signatures) in `eval_dir`; a token classifier (given the tokenizer's `model_proto`, for
    piece offsets) gets no Classify signature."""
    if model_proto is None:
        module = ServingModule(model, tft_output, names)
        signatures = {"serving_default": module.serve_text, "classify": module.classify}
    else:
        module = TokenServingModule(model, tft_output, names, model_proto)
        signatures = {"serving_default": module.serve_text}
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
    write_warmup_requests(serving_dir)
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


def run_fn(fn_args) -> None:
    custom = dict(fn_args.custom_config)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    tokens = custom.get("task", "note_classification") == TOKEN_TASK
    names = bio_labels(list(custom["entity_types"])) if tokens else label_names(custom, tft_output)
    target = TOKEN_LABELS if tokens else LABEL
    num_labels = len(names)
    feature_spec = tft_output.transformed_feature_spec()
    batch, seed = int(custom["batch_size"]), int(custom.get("seed", 0))
    train_files = trainer_common.example_files(fn_args.train_files)
    eval_files = trainer_common.example_files(fn_args.eval_files)
    steps = int(fn_args.train_steps)
    policy = trainer_common.set_precision()
    logging.info("fine-tuning on %d labels for %d steps, batch %d, %s", num_labels, steps, batch, policy)

    strategy = trainer_common.distribution_strategy()
    global_batch = batch * strategy.num_replicas_in_sync
    with strategy.scope():
        keras.utils.set_random_seed(seed)
        task_class = AlbertTokenClassifier if tokens else AlbertClassifier
        classifier = task_class(_pretrained_backbone(fn_args), num_labels=num_labels)
        schedule = keras.optimizers.schedules.PolynomialDecay(
            float(custom["learning_rate"]), max(steps, 1), 0.0
        )
        classifier.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01))

    logs = os.path.join(fn_args.model_run_dir, "logs")
    every = trainer_common.checkpoint_interval(steps, 5)
    eval_data = _dataset(eval_files, feature_spec, global_batch, seed=None, target=target).take(
        int(custom.get("eval_steps", 10))
    )
    history = pretrain(
        classifier,
        lambda: _dataset(train_files, feature_spec, global_batch, seed=seed, target=target),
        total_steps=steps,
        checkpoint_dir=trainer_common.resume_dir(fn_args.model_run_dir, custom, train_files),
        steps_per_checkpoint=every,
        callbacks=[keras.callbacks.TensorBoard(log_dir=trainer_common.worker_path(strategy, logs))],
        verbose=2,
    )
    results = classifier.evaluate(eval_data, return_dict=True, verbose=0)
    logging.info("fine-tuned: %s; eval %s", {k: v[-1] for k, v in history.items()}, results)
    export_dir = trainer_common.worker_path(strategy, model_layout.client_copy_dir(fn_args.serving_model_dir))
    eval_dir = trainer_common.worker_path(strategy, fn_args.serving_model_dir)
    model_proto = read_model_proto(custom["tokenizer_dir"]) if tokens else None
    export(classifier, tft_output, export_dir, names, model_proto, eval_dir)
