"""What both Trainer modules share: distribution strategy, precision, a resumable checkpoint folder,
and reading the transformed examples."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import tensorflow as tf


def distribution_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, MirroredStrategy on several GPUs,
    the default strategy otherwise."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if sum(len(tasks) for tasks in cluster.values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision() -> str:
    """Mixed precision on GPU (bfloat16 where the GPU has it, else float16); float32 on CPU."""
    import keras

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        policy = "float32"
    else:
        major = int(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (7, 0))[0])
        policy = "mixed_bfloat16" if major >= 8 else "mixed_float16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def resume_dir(model_run_dir: str, custom_config: dict[str, Any], inputs: list[str]) -> str:
    """A checkpoint folder that a re-run of the same Trainer (same config, same input data) finds
    again: TFX gives every execution a new output folder, so a killed run's checkpoints would
    otherwise be lost to the retry."""
    key = hashlib.sha256(json.dumps([custom_config, sorted(inputs)], sort_keys=True).encode()).hexdigest()
    return os.path.join(os.path.dirname(os.path.normpath(model_run_dir)), f"resume-{key[:16]}")


def example_files(patterns: list[str]) -> list[str]:
    files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {patterns}")
    return files


def read_examples(files: list[str], spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Parsed transformed examples (GZIP TFRecords), one at a time, as numpy values."""
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda raw: tf.io.parse_single_example(raw, spec)
    )
    for example in dataset.as_numpy_iterator():
        yield {k: (v.values if hasattr(v, "values") else v) for k, v in example.items()}
