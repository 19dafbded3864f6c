"""The fine-tuning Trainer with its training phase in the JAX child (`finetune.train` under
`child.run_child`) and its export in this process, under TensorFlow.

The inputs are real and small: a SentencePiece tokenizer trained on a few dozen MTSamples notes, the
project's Transform graph run over them with TF Transform's Beam implementation (train and eval
splits, GZIP TFRecords of transformed examples, as the Transform component writes them), and an
untrained one-layer ALBERT pretrainer as the base model. `run_fn` gets them as TFX's `FnArgs`. (No
shared pipeline run leaves these behind for other test files: each pipeline test runs its own.)

The JAX model's answers come from a second child (`jax_logits` below), which rebuilds the classifier
under JAX, loads the weights the training child saved and runs it on inputs transformed here.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import pytest
import tensorflow as tf

from components import model_layout
from components.trainer import child, finetune
from components.trainer import common as trainer_common

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample" / "mtsamples_sample.csv"
LABELS = ("Neurology", "Orthopedic", "Surgery")
TRAIN_PER_LABEL, EVAL_PER_LABEL = 10, 4
SEQ_LENGTH = 32
STEPS, EVAL_EVERY = 8, 2
#: A divisor of the training notes: under JAX a last, smaller batch would compile a second train step.
BATCH = 5
#: Made-up notes for the serving signature.
TEXTS = (
    "Chief complaint: low back pain radiating to the left leg after lifting.",
    "Postoperative day one after laparoscopic cholecystectomy; tolerating diet.",
    "Seizure-like episodes with brief loss of awareness; EEG ordered.",
)
ATOL = 1e-5


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the Trainer reads: the tokenizer, the Transform output, the transformed examples' file
    patterns and the pretraining Trainer's model folder."""

    tokenizer_dir: str
    transform_output: str
    train_pattern: str
    eval_pattern: str
    base_model: str


def _notes() -> list[dict[str, Any]]:
    """Raw notes as ingestion writes them (text, sentences, labels, note_type, num_chars), the labels
    interleaved so both splits hold each."""
    csv.field_size_limit(1 << 24)
    with open(SAMPLE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_label: dict[str, list[str]] = {label: [] for label in LABELS}
    for row in rows:
        if row["medical_specialty"].strip() in by_label:
            by_label[row["medical_specialty"].strip()].append(row["transcription"])
    notes = []
    for index in range(TRAIN_PER_LABEL + EVAL_PER_LABEL):
        for label in LABELS:
            text = by_label[label][index]
            sentences = [s.strip() for s in text.replace(". ", ".\n").splitlines() if s.strip()]
            notes.append(
                {
                    "text": text.encode("utf-8"),
                    "sentences": [s.encode("utf-8") for s in sentences],
                    "labels": [label.encode("utf-8")],
                    "note_type": b"consult",
                    "num_chars": len(text),
                }
            )
    return notes


def _transform(notes: list[dict[str, Any]], tokenizer_dir: str, out: Path) -> None:
    """TF Transform over the notes with the project's preprocessing_fn, analysed on the train split."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from components.transform_module import preprocessing_fn

    raw_spec = {
        "text": tf.io.FixedLenFeature([], tf.string),
        "sentences": tf.io.VarLenFeature(tf.string),
        "labels": tf.io.VarLenFeature(tf.string),
        "note_type": tf.io.FixedLenFeature([], tf.string),
        "num_chars": tf.io.FixedLenFeature([], tf.int64),
    }
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    custom_config = {"tokenizer_dir": tokenizer_dir, "seq_length": SEQ_LENGTH}
    train_count = TRAIN_PER_LABEL * len(LABELS)
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(out / "tmp")):
        train = pipeline | "train" >> beam.Create(notes[:train_count])
        evaluation = pipeline | "eval" >> beam.Create(notes[train_count:])
        analyze = tft_beam.AnalyzeAndTransformDataset(
            functools.partial(preprocessing_fn, custom_config=custom_config)
        )
        (train_transformed, transformed_metadata), transform_fn = (train, metadata) | analyze
        eval_transformed, _ = ((evaluation, metadata), transform_fn) | tft_beam.TransformDataset()
        coder = tft.coders.ExampleProtoCoder(transformed_metadata.schema)
        for split, data in (("train", train_transformed), ("eval", eval_transformed)):
            _ = (
                data
                | f"encode {split}" >> beam.Map(coder.encode)
                | f"write {split}"
                >> beam.io.WriteToTFRecord(
                    str(out / "transformed_examples" / f"Split-{split}" / "transformed_examples"),
                    file_name_suffix=".gz",
                )
            )
        _ = transform_fn | tft_beam.WriteTransformFn(str(out / "transform_graph"))
        _ = metadata | tft_beam.WriteMetadata(
            str(out / "transform_graph" / tft.TFTransformOutput.RAW_METADATA_DIR), pipeline
        )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
    from components.sentencepiece_tokenizer.train import train_sentencepiece, vocabulary
    from components.trainer.pretrain import PRETRAINER_FILE

    out = tmp_path_factory.mktemp("finetune_inputs")
    notes = _notes()
    sentences = [s.decode("utf-8") for note in notes for s in note["sentences"]]
    tokenizer = train_sentencepiece(sentences, out / "tokenizer", vocab_size=300, seed=0)
    _transform(notes, str(out / "tokenizer"), out)
    pieces = len(vocabulary(tokenizer.model_path.read_bytes()).pieces)
    # One layer: every JAX compile (a child compiles its train and predict steps) takes seconds, not tens.
    config = AlbertConfig.preset(
        "tiny", vocab_size=pieces, num_hidden_layers=1, num_hidden_groups=1, inner_group_num=1
    )
    keras.utils.set_random_seed(0)
    (out / "base_model").mkdir()
    AlbertPretrainer(AlbertBackbone(config)).save(str(out / "base_model" / PRETRAINER_FILE))
    examples = out / "transformed_examples"
    return Inputs(
        tokenizer_dir=str(out / "tokenizer"),
        transform_output=str(out / "transform_graph"),
        train_pattern=str(examples / "Split-train" / "*"),
        eval_pattern=str(examples / "Split-eval" / "*"),
        base_model=str(out / "base_model"),
    )


def _fn_args(inputs: Inputs, root: Path, attempt: int, backend: str = "jax"):
    """TFX's FnArgs for one Trainer attempt: every attempt gets its own output folders under `root`,
    as TFX gives every execution, and so finds its predecessor's checkpoints (`resume_dir`)."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    return FnArgs(
        train_files=[inputs.train_pattern],
        eval_files=[inputs.eval_pattern],
        train_steps=STEPS,
        transform_output=inputs.transform_output,
        serving_model_dir=str(root / "model" / str(attempt) / "Format-Serving"),
        model_run_dir=str(root / "model_run" / str(attempt)),
        base_model=inputs.base_model,
        custom_config={
            "batch_size": BATCH,
            "learning_rate": 1e-3,
            "seed": 0,
            "eval_every": EVAL_EVERY,
            "tokenizer_dir": inputs.tokenizer_dir,
            child.BACKEND_KEY: backend,
        },
    )


def _training_record(fn_args) -> dict:
    return json.loads((Path(fn_args.model_run_dir) / finetune.TRAINING_FILE).read_text(encoding="utf-8"))


def _checkpoint_dir(fn_args) -> Path:
    train_files = trainer_common.example_files(fn_args.train_files)
    return Path(trainer_common.resume_dir(fn_args.model_run_dir, dict(fn_args.custom_config), train_files))


@pytest.fixture(scope="module")
def jax_run(inputs, tmp_path_factory):
    """One uninterrupted run with the training phase in the JAX child."""
    fn_args = _fn_args(inputs, tmp_path_factory.mktemp("jax_run"), attempt=1)
    finetune.run_fn(fn_args)
    return fn_args


def jax_logits(job: dict[str, Any]) -> dict[str, Any]:
    """In a child under KERAS_BACKEND=jax: the classifier rebuilt on the base model's backbone with the
    weights in job["weights"], run by the Trainer's own eval path (`_call_classifier`) on each input set
    in job["inputs"] (name -> {token_ids, segment_ids, padding_mask} as lists); its logits, as lists."""
    tf.config.set_visible_devices([], "GPU")
    assert keras.backend.backend() == "jax"
    backbone = finetune._pretrained_backbone(job["base_model"], job["scratch_dir"])
    classifier = finetune._classifier(backbone, "note_classification", job["num_labels"])
    classifier.load_weights(job["weights"])
    return {
        name: finetune._call_classifier(classifier, {k: np.asarray(v) for k, v in arrays.items()}).tolist()
        for name, arrays in job["inputs"].items()
    }


def _model_inputs(features: dict) -> dict[str, list]:
    return {name: np.asarray(features[name]).astype(np.int32).tolist() for name in finetune.INPUTS}


def _eval_features(inputs: Inputs) -> dict:
    """The transformed eval examples, every feature batched, in file order (the order in which the
    export's eval predictions list them)."""
    import tensorflow_transform as tft

    spec = tft.TFTransformOutput(inputs.transform_output).transformed_feature_spec()
    files = trainer_common.example_files([inputs.eval_pattern])
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1000)
    return next(iter(dataset.map(lambda raw: tf.io.parse_example(raw, spec))))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@pytest.mark.slow
def test_the_jax_child_trains_and_the_export_answers_as_the_jax_model_does(jax_run, inputs, tmp_path):
    import tensorflow_transform as tft

    record = _training_record(jax_run)
    assert record["backend"] == "jax"
    assert record["steps_trained"] == STEPS and record["resumed_from_step"] == 0
    assert [e["step"] for e in record["evals"]] == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
    assert record["best_step"] in [e["step"] for e in record["evals"]]
    job = json.loads((Path(jax_run.model_run_dir) / finetune.CHILD_DIR / "job.json").read_text("utf-8"))
    assert job["steps"] == STEPS and sorted(job["label_names"]) == list(LABELS)

    # The client's texts through the Transform graph, as the export reads them.
    tft_output = tft.TFTransformOutput(inputs.transform_output)
    raw = finetune._raw_features(dict(tft_output.raw_feature_spec()), tf.constant(TEXTS))
    text_features = tft_output.transform_features_layer()(raw)
    eval_features = _eval_features(inputs)
    weights = str(Path(jax_run.model_run_dir) / finetune.WEIGHTS_FILE)
    answers = child.run_child(
        "tests.components.trainer.test_finetune_backends:jax_logits",
        {
            "base_model": inputs.base_model,
            "scratch_dir": str(tmp_path / "scratch"),
            "weights": weights,
            "num_labels": len(LABELS),
            "inputs": {"texts": _model_inputs(text_features), "eval": _model_inputs(eval_features)},
        },
        workdir=str(tmp_path / "child"),
        backend="jax",
    )
    jax_texts, jax_eval = np.asarray(answers["texts"]), np.asarray(answers["eval"])
    assert jax_texts.shape == (len(TEXTS), len(LABELS))
    assert jax_eval.shape == (EVAL_PER_LABEL * len(LABELS), len(LABELS))

    # The classifier rebuilt here, under TensorFlow, with the child's weights.
    backbone = finetune._pretrained_backbone(inputs.base_model, str(tmp_path / "scratch_tf"))
    classifier = finetune._classifier(backbone, "note_classification", len(LABELS))
    classifier.load_weights(weights)
    tf_eval = finetune._call_classifier(classifier, {k: eval_features[k] for k in finetune.INPUTS})
    np.testing.assert_allclose(tf_eval, jax_eval, atol=ATOL)

    # The exported client copy's serving signature on the texts...
    served = tf.saved_model.load(model_layout.client_copy_dir(jax_run.serving_model_dir))
    answer = served.signatures["serving_default"](text=tf.constant(TEXTS))
    np.testing.assert_allclose(answer["probabilities"].numpy(), _softmax(jax_texts), atol=ATOL)
    assert [n.decode() for n in answer["label_names"].numpy()[0]] == job["label_names"]
    # ...and the exported graph's answers on the eval split, which the model card reads.
    with np.load(Path(jax_run.model_run_dir) / finetune.PREDICTIONS_FILE) as predictions:
        np.testing.assert_allclose(predictions["probabilities"], _softmax(jax_eval), atol=ATOL)
        np.testing.assert_array_equal(predictions["targets"], eval_features["label"].numpy())
    # The Keras folder holds the child's weights for the next run's warm start.
    keras_weights = Path(model_layout.keras_dir(jax_run.serving_model_dir)) / finetune.WEIGHTS_FILE
    assert keras_weights.read_bytes() == Path(weights).read_bytes()


class _RecordingPopen(subprocess.Popen):
    """subprocess.Popen that remembers the training children it starts."""

    started: ClassVar[list[subprocess.Popen]] = []

    def __init__(self, args, *rest, **kwargs):
        super().__init__(args, *rest, **kwargs)
        if "components.trainer.child" in args:
            _RecordingPopen.started.append(self)


@pytest.mark.slow
def test_a_child_killed_after_its_first_checkpoint_resumes_there_on_the_next_attempt(
    inputs, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "trainer"
    first = _fn_args(inputs, root, attempt=1)
    state = _checkpoint_dir(first) / "checkpoint.json"
    _RecordingPopen.started = []
    monkeypatch.setattr(subprocess, "Popen", _RecordingPopen)
    killed: list[int] = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        for process in _RecordingPopen.started:
            process.kill()
            killed.append(process.pid)

    killer = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    killer.start()
    with pytest.raises(child.ChildFailed, match="exited with status -9"):
        finetune.run_fn(first)
    killer.join(timeout=10)
    monkeypatch.undo()
    assert len(killed) == 1
    step = json.loads(state.read_text(encoding="utf-8"))["step"]
    assert 0 < step < STEPS, "the child was not killed mid-training"
    assert not (Path(first.model_run_dir) / finetune.TRAINING_FILE).exists()

    second = _fn_args(inputs, root, attempt=2)
    assert _checkpoint_dir(second) == _checkpoint_dir(first)
    capsys.readouterr()
    finetune.run_fn(second)
    # The child's output (Keras's epoch lines; an epoch is EVAL_EVERY steps) reaches the run's log.
    log = capsys.readouterr().err
    epochs = STEPS // EVAL_EVERY
    trained = [n for n in range(1, epochs + 1) if f"Epoch {n}/{epochs}" in log]
    assert trained == list(range(step // EVAL_EVERY + 1, epochs + 1))
    record = _training_record(second)
    assert record["backend"] == "jax" and record["resumed_from_step"] == step
    assert record["steps_trained"] == STEPS
    assert [e["step"] for e in record["evals"]] == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
    assert json.loads(state.read_text(encoding="utf-8"))["step"] == STEPS
    assert (Path(second.serving_model_dir) / "saved_model.pb").exists()
    # That a resumed run ends with an unbroken run's weights (dropout's seed generators included) is
    # tested on the same checkpoint code in tests/albert_keras/test_pretrain_loop.py.
