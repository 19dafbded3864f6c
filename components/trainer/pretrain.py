"""Trainer "pretrain": ALBERT's MLM + SOP on the pretraining instances of the training split, from
scratch, continued from the pipeline's last pretrained model, or from a public checkpoint.

The instances (sentence-order pairs and n-gram masks) are made once by the PretrainingExamples step
(components/pretraining_examples) and read here from its Parquet shards (`albert_keras.pretraining_shards`),
so training waits on no Python masking and reads without TensorFlow. The model is saved as
`pretrainer.keras` in the Trainer's model folder, which the fine-tuning Trainer takes as its base model,
with `pretraining.json` beside it (the vocabulary's sha256, the steps behind the weights). A killed run
resumes from its last checkpoint (see `common.resume_dir`).

Where it trains (custom_config `training_backend`, components/trainer/child.py): `train(job)` is the whole
training and imports no TensorFlow unless Keras's backend is TensorFlow. run_fn calls it in process
(TensorFlow, with the tf.distribute strategy: several GPUs, multi-worker) or in a JAX child process, and
writes the records either way. The pretrainer is a `.keras` file, the same from either backend.

Continued pretraining: given a `base_model` (the pipeline's last pretrained model, made from other
examples: pipeline/resolvers.py) whose vocabulary is the tokenizer's, the Trainer loads it and trains
`continued_steps` more steps (a fresh warmup and decay at the same peak rate) instead of `train_steps`
from scratch. A base model with another vocabulary cannot be continued: the run starts from scratch and
says why. How the run started is recorded in the model run's training.json (`start`).

custom_config: tokenizer_dir (added by TokenizedTrainer), preset, seq_length, max_predictions,
batch_size, learning_rate, steps, init_checkpoint, init_checkpoint_format, seed, continued_steps,
training_backend, eval_batches, eval_curve (evaluate the eval split at every checkpoint: training.json
`curve`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from typing import Any

import keras
import numpy as np
from absl import logging

from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
from albert_keras.optimization import Lamb, WarmupPolynomialDecay
from albert_keras.pretrain_loop import checkpoint_interval, pretrain
from albert_keras.pretraining_shards import ShardReader
from components.trainer import child
from components.trainer.progress import ProgressFile

PRETRAINER_FILE = "pretrainer.keras"
#: Beside PRETRAINER_FILE: vocabulary_sha256, preset, steps (every step behind the weights).
PRETRAINING_FILE = "pretraining.json"
#: Checkpoints over a run (a killed run loses at most a tenth of its steps).
CHECKPOINTS = 10
#: Evaluation batches of the eval split's instances at the end of training (MLM and SOP accuracy).
EVAL_BATCHES = 50
#: In the model run folder: how the run started, its steps and losses.
TRAINING_FILE = "training.json"


def initial_backbone(config: AlbertConfig, custom_config: dict) -> AlbertBackbone:
    """A new backbone, or one loaded from `init_checkpoint` (whose vocabulary must be the tokenizer's)."""
    path = custom_config.get("init_checkpoint") or ""
    if not path:
        return AlbertBackbone(config)
    if custom_config.get("init_checkpoint_format", "hf") == "google":
        from albert_keras.convert.google import load_google_model

        backbone = load_google_model(path, task="backbone")
    else:
        from albert_keras.convert.hf_files import load_hf_model

        backbone = load_hf_model(path, task="backbone")
    if backbone.config.vocab_size != config.vocab_size:
        raise ValueError(
            f"init_checkpoint {path} has a vocabulary of {backbone.config.vocab_size}, the pipeline's "
            f"tokenizer {config.vocab_size}: continue pretraining with the checkpoint's own tokenizer"
        )
    return backbone


def continuation(base_model_dir: str | None, vocabulary_sha256: str) -> tuple[dict | None, str]:
    """The base model's pretraining.json when the run can continue from it, and how the run starts."""
    if not base_model_dir:
        return None, "from scratch"
    import tensorflow as tf

    path = os.path.join(base_model_dir, PRETRAINING_FILE)
    if not tf.io.gfile.exists(path):
        return None, f"from scratch (the last pretrained model, {base_model_dir}, has no {PRETRAINING_FILE})"
    with tf.io.gfile.GFile(path) as f:
        base = json.load(f)
    if base.get("vocabulary_sha256") != vocabulary_sha256:
        return None, f"from scratch (the last pretrained model, {base_model_dir}, has another vocabulary)"
    return base, f"continued from {base_model_dir} ({base.get('steps', 0)} steps behind it)"


def run_fn(fn_args) -> None:
    import tensorflow as tf

    from components.sentencepiece_tokenizer.train import vocabulary, vocabulary_sha256
    from components.trainer import common
    from components.transform_module import read_model_proto

    custom = dict(fn_args.custom_config)
    model_proto = read_model_proto(custom["tokenizer_dir"])
    sha256 = vocabulary_sha256(model_proto)
    base, start = continuation(getattr(fn_args, "base_model", None), sha256)
    steps = int(fn_args.train_steps)
    if base is not None:
        steps = int(custom.get("continued_steps", steps))
    train_files = shard_files(fn_args.train_files)
    eval_files = shard_files(fn_args.eval_files or [], required=False)
    backend = child.choose_backend(
        custom.get(child.BACKEND_KEY), len(tf.config.list_physical_devices("GPU")), common.cluster_size()
    )
    remote = "://" in fn_args.model_run_dir
    work = tempfile.mkdtemp(prefix="pretrain-") if remote else fn_args.model_run_dir
    os.makedirs(work, exist_ok=True)
    job = {
        "train_files": train_files,
        "eval_files": eval_files,
        "vocab_size": len(vocabulary(model_proto).pieces),
        "preset": custom["preset"],
        "seq_length": int(custom["seq_length"]),
        "max_predictions": int(custom["max_predictions"]),
        "batch_size": int(custom["batch_size"]),
        "learning_rate": float(custom["learning_rate"]),
        "steps": steps,
        "seed": int(custom.get("seed", 0)),
        "init_checkpoint": custom.get("init_checkpoint") or "",
        "init_checkpoint_format": custom.get("init_checkpoint_format", "hf"),
        "base_model": None,
        "checkpoint_dir": common.resume_dir(fn_args.model_run_dir, custom, train_files),
        "model_file": os.path.join(work, PRETRAINER_FILE),
        "logs": os.path.join(fn_args.model_run_dir, "logs"),
        "eval_batches": int(custom.get("eval_batches", EVAL_BATCHES)),
        "eval_curve": bool(custom.get("eval_curve", False)),
    }
    if base is not None:
        job["base_model"] = os.path.join(work, "base_" + PRETRAINER_FILE)
        tf.io.gfile.copy(os.path.join(fn_args.base_model, PRETRAINER_FILE), job["base_model"], overwrite=True)
    logging.info(
        "pretraining %s %s for %d steps, batch %d, under %s",
        job["preset"],
        start,
        steps,
        job["batch_size"],
        backend,
    )
    if backend == "jax":
        child.leave_gpus_to_child()
        result = child.run_child("components.trainer.pretrain:train", job, os.path.join(work, "child"), "jax")
    else:
        result = train(job)
    if not result["chief"]:
        return  # a non-chief worker of a multi-worker run: it trained, the chief writes the outputs
    tf.io.gfile.makedirs(fn_args.serving_model_dir)
    tf.io.gfile.copy(
        job["model_file"], os.path.join(fn_args.serving_model_dir, PRETRAINER_FILE), overwrite=True
    )
    if remote:
        tf.io.gfile.copy(
            job["model_file"], os.path.join(fn_args.model_run_dir, PRETRAINER_FILE), overwrite=True
        )
    behind = int(base.get("steps", 0)) if base is not None else 0
    record = {"vocabulary_sha256": sha256, "preset": job["preset"], "steps": behind + steps}
    _write(os.path.join(fn_args.serving_model_dir, PRETRAINING_FILE), record)
    history = result["history"]
    losses = history.get("loss", [])
    _write(
        os.path.join(fn_args.model_run_dir, TRAINING_FILE),
        {
            "start": start,
            "backend": result["backend"],
            "precision": result["precision"],
            "instances": result["instances"],
            # The loop always ends at `steps` (a resumed run that had finished trains none again).
            "steps_trained": steps,
            "final_loss": float(losses[-1]) if losses else None,
            "steps_behind_weights": behind + steps,
            **{k: float(v[-1]) for k, v in history.items() if k != "loss" and v},
            **{f"eval_{k}": v for k, v in result["eval"].items()},
            "timing": result["timing"],
            "curve": result["curve"],
        },
    )
    if remote:
        shutil.rmtree(work, ignore_errors=True)


def shard_files(patterns: list[str], required: bool = True) -> list[str]:
    """The Parquet shards under the Trainer's split patterns (`Split-train/*`)."""
    import tensorflow as tf

    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern) if f.endswith(".parquet"))
    if required and not files:
        raise FileNotFoundError(
            f"no pretraining shards (*.parquet) match {patterns}: the Trainer's examples must be the "
            "PretrainingExamples step's output"
        )
    return files


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Pretrains as the job says and saves the pretrainer to `job["model_file"]`; returns the history,
    the evaluation on the eval split's instances, the backend and the precision.

    Runs under any Keras backend: under TensorFlow with the tf.distribute strategy of
    `common.distribution_strategy`, under JAX on the first device (JAX data parallel comes with the
    Kubeflow resources). Imports TensorFlow only under the TensorFlow backend.
    """
    tf_backend = keras.backend.backend() == "tensorflow"
    seq, preds, seed = int(job["seq_length"]), int(job["max_predictions"]), int(job["seed"])
    if tf_backend:
        from components.trainer import common

        precision = common.set_precision()
        strategy = common.distribution_strategy()
        replicas, scope, chief = strategy.num_replicas_in_sync, strategy.scope(), common.is_chief(strategy)
    else:
        precision = accelerator_precision()
        strategy, replicas, scope, chief = None, 1, contextlib.nullcontext(), True
    global_batch = int(job["batch_size"]) * replicas
    config = AlbertConfig.preset(job["preset"], vocab_size=int(job["vocab_size"]))
    if seq > config.max_position_embeddings:
        raise ValueError(
            f"seq_length {seq} exceeds the {job['preset']} preset's "
            f"{config.max_position_embeddings} positions"
        )
    reader = ShardReader(job["train_files"], seq, preds, global_batch, seed=seed)
    steps = int(job["steps"])
    with scope:
        keras.utils.set_random_seed(seed)
        if job.get("base_model"):
            model = AlbertPretrainer(keras.saving.load_model(job["base_model"], safe_mode=True).backbone)
        else:
            model = AlbertPretrainer(initial_backbone(config, job))
        schedule = WarmupPolynomialDecay(float(job["learning_rate"]), max(steps, 1), max(steps // 10, 0))
        model.compile(optimizer=Lamb(schedule))

    def source(batches):
        return _tf_dataset(batches, seq, preds) if tf_backend else batches()

    held_out = None
    if job.get("eval_files"):
        held_out = ShardReader(job["eval_files"], seq, preds, global_batch, seed=seed, shuffle=False)
    eval_batches = int(job.get("eval_batches", EVAL_BATCHES))

    def evaluate() -> dict[str, float]:
        if held_out is None:
            return {}
        batches = min(eval_batches, -(-held_out.num_instances // global_batch))
        found = model.evaluate(
            source(lambda: held_out.batches(repeat=False)), steps=batches, return_dict=True, verbose=0
        )
        return {k: float(v) for k, v in found.items()}

    timer = StepTimer()
    curve = HeldOutCurve(evaluate, every=0)
    callbacks: list[keras.callbacks.Callback] = [ProgressFile("pretrain"), timer]
    if tf_backend:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=_worker_path(strategy, job["logs"])))
    history = {}
    if steps:
        every = checkpoint_interval(steps, int(job.get("checkpoints", CHECKPOINTS)))
        if job.get("eval_curve"):
            curve.every = every
            callbacks.append(curve)
        history = pretrain(
            model,
            lambda step: source(lambda: reader.batches(step)),
            total_steps=steps,
            checkpoint_dir=job["checkpoint_dir"],
            steps_per_checkpoint=every,
            callbacks=callbacks,
            verbose=2,
        )
    evaluation = (
        curve.points[-1]["eval"] if curve.points and curve.points[-1]["step"] == steps else evaluate()
    )
    model_file = _worker_path(strategy, job["model_file"])
    os.makedirs(os.path.dirname(model_file) or ".", exist_ok=True)
    model.save(model_file)
    return {
        "chief": chief,
        "backend": keras.backend.backend(),
        "precision": precision,
        "instances": reader.num_instances,
        "history": {k: [float(x) for x in v] for k, v in history.items()},
        "eval": evaluation,
        "timing": timer.summary(global_batch),
        "curve": curve.points,
    }


class HeldOutCurve(keras.callbacks.Callback):
    """The eval split's MLM and SOP accuracy (and losses) at every checkpoint: how pretraining
    progresses on notes it never trains on (job `eval_curve`; bench/pretrain_gain.py plots it)."""

    def __init__(self, evaluate, every: int):
        super().__init__()
        self.evaluate, self.every = evaluate, every
        self.points: list[dict] = []
        self.started = time.perf_counter()

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        found = self.evaluate()
        self.points.append({"step": (epoch + 1) * self.every, "seconds": seconds, "eval": found})


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training step, compilation excluded: what the Trainer itself trains at,
    input and checkpoints included (bench/device_check.sh reads it beside the library's step)."""

    #: The first steps of a fit, compilation among them, are not counted.
    SKIP = 2

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())

    def summary(self, global_batch: int) -> dict[str, float | int]:
        gaps = np.diff(self.times[self.SKIP - 1 :]) if len(self.times) > self.SKIP else np.zeros(0)
        if not len(gaps):
            return {"steps_timed": 0}
        median = float(np.median(gaps))
        return {
            "steps_timed": len(gaps),
            "seconds_per_step": median,
            "sequences_per_second": global_batch / median,
        }


def accelerator_precision() -> str:
    """The JAX child's policy: mixed bfloat16 on a GPU that has it (compute capability 8 or more),
    float32 on CPU; as `common.set_precision` decides under TensorFlow."""
    import jax

    device = jax.devices()[0]
    if device.platform != "gpu":
        policy = "float32"
    else:
        major = int(str(getattr(device, "compute_capability", "8.0")).split(".")[0])
        policy = "mixed_bfloat16" if major >= 8 else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _worker_path(strategy, path: str) -> str:
    if strategy is None:
        return path
    from components.trainer import common

    return common.worker_path(strategy, path)


def _tf_dataset(batches, seq: int, preds: int):
    """The reader's (x, y) batches as a tf.data.Dataset, so tf.distribute can split them."""
    import tensorflow as tf

    x = {name: tf.TensorSpec((None, seq), tf.int32) for name in ("token_ids", "segment_ids", "padding_mask")}
    x["mask_positions"] = tf.TensorSpec((None, preds), tf.int32)
    y = {
        "mlm_labels": tf.TensorSpec((None, preds), tf.int32),
        "mlm_weights": tf.TensorSpec((None, preds), tf.float32),
        "sop_labels": tf.TensorSpec((None,), tf.int32),
    }
    return tf.data.Dataset.from_generator(batches, output_signature=(x, y))


def _write(path: str, record: dict) -> None:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(record, indent=1, sort_keys=True))
