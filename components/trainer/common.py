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
    if cluster_size() > 1:
        patch_keras_for_multi_worker()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cluster_size() -> int:
    """The tasks of the cluster that TF_CONFIG names (0 without one)."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return sum(len(tasks) for tasks in cluster.values())


def patch_keras_for_multi_worker() -> None:
    """Works around two bugs in Keras 3.12's TensorFlow trainer that make every `fit` and `evaluate`
    fail under MultiWorkerMirroredStrategy, where each element of a batch is a `PerReplica` value:

    - before the first step Keras passes the whole first batch to one `strategy.reduce` call, which
      takes a single tensor, not a dict (keras-team/keras#20329); only its shapes and dtypes are used,
      so this worker's own values are taken instead, with no collective;
    - each step's logs are averaged with `strategy.reduce("MEAN", v, axis=0)`, which fails for the
      scalars that metrics return (tensorflow/tensorflow#72388); scalars are averaged over replicas.

    Only those failing paths change; applying it twice is harmless.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    trainer_class = tf_trainer.TensorFlowTrainer
    if getattr(trainer_class, "_multi_worker_patched", False):
        return
    symbolic_build, reduce_per_replica = trainer_class._maybe_symbolic_build, tf_trainer.reduce_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            local = self.distribute_strategy.experimental_local_results
            for _, _, batches in iterator:  # (first step, last step, iterator) in Keras 3.12
                data_batch = tf.nest.map_structure(lambda v: local(v)[0], next(batches))
                break
            iterator = None
        return symbolic_build(self, iterator=iterator, data_batch=data_batch)

    def reduce_logs(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction)

        def mean(value):
            scalar = strategy.experimental_local_results(value)[0].shape.rank == 0
            return strategy.reduce("MEAN", value, axis=None if scalar else 0)

        return tf.nest.map_structure(mean, values)

    trainer_class._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_logs
    trainer_class._multi_worker_patched = True


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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True except on the non-chief workers of a multi-worker strategy."""
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def worker_path(strategy: tf.distribute.Strategy, path: str) -> str:
    """`path` on the chief; a scratch folder on other workers. Every worker of a multi-worker run
    must save (saving can take part in collectives), but only the chief may write the real output."""
    if is_chief(strategy):
        return path
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="worker-output-"), os.path.basename(os.path.normpath(path)))
