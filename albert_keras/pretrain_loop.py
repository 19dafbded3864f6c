"""Pretraining with `fit`, checkpointed every N steps, resuming at the same step after a kill.

A checkpoint is the model's and the optimizer's state (`.weights.h5`) plus the step it was taken
at, written to temporary files and renamed into place, so a kill mid-write leaves the previous
checkpoint intact. On restart, `pretrain` restores the newest checkpoint and skips the batches
already trained on, so a deterministic dataset gives the same run as one never interrupted.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence

import keras

CHECKPOINT_WEIGHTS = "checkpoint.weights.h5"
CHECKPOINT_STATE = "checkpoint.json"


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint at the end of every epoch; `pretrain` makes an epoch N steps."""

    def __init__(self, directory: str, steps_per_checkpoint: int):
        super().__init__()
        self.directory = directory
        self.steps_per_checkpoint = steps_per_checkpoint

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_checkpoint
        if is_chief(self.model):
            save_checkpoint(self.model, self.directory, step)
            return
        # A multi-worker tf.distribute run: every worker saves (as tf.distribute asks, in case reading
        # a variable takes part in a collective), but only the chief into the shared folder.
        with tempfile.TemporaryDirectory(prefix="checkpoint-worker-") as scratch:
            save_checkpoint(self.model, scratch, step)


def is_chief(model: keras.Model) -> bool:
    """False only on a non-chief worker of a multi-worker tf.distribute strategy (the TensorFlow
    backend's models carry their strategy; the others have none)."""
    strategy = getattr(model, "distribute_strategy", None)
    return bool(getattr(getattr(strategy, "extended", None), "should_checkpoint", True))


def save_checkpoint(model: keras.Model, directory: str, step: int) -> None:
    os.makedirs(directory, exist_ok=True)
    weights = os.path.join(directory, CHECKPOINT_WEIGHTS)
    state = os.path.join(directory, CHECKPOINT_STATE)
    model.save_weights(weights + ".tmp.weights.h5", overwrite=True)
    with open(state + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"step": step}, f)
    # Weights first, then the step that names them: a kill between the two renames leaves new
    # weights with the old step, which the step check in restore_checkpoint catches.
    os.replace(weights + ".tmp.weights.h5", weights)
    os.replace(state + ".tmp", state)


def restore_checkpoint(model: keras.Model, directory: str) -> int:
    """Loads the newest checkpoint into a compiled model; returns its step (0 when there is none)."""
    state = os.path.join(directory, CHECKPOINT_STATE)
    if not os.path.exists(state):
        return 0
    with open(state, encoding="utf-8") as f:
        step = int(json.load(f)["step"])
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(directory, CHECKPOINT_WEIGHTS))
    restored = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if restored != step:
        raise RuntimeError(
            f"checkpoint in {directory} is inconsistent: its weights are at optimizer step {restored}, "
            f"its state file says step {step}"
        )
    return step


def pretrain(
    model: keras.Model,
    make_dataset: Callable[[], object],
    total_steps: int,
    checkpoint_dir: str,
    steps_per_checkpoint: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> dict[str, list[float]]:
    """Trains a compiled `AlbertPretrainer` for `total_steps` batches, resuming from `checkpoint_dir`.

    `make_dataset()` returns a batched `tf.data.Dataset` (or anything with `.repeat()` and
    `.skip()`); it is repeated, and the batches of steps already taken are skipped on resume.
    Returns the `fit` history of this run (empty when the checkpoint is already at `total_steps`).
    """
    if total_steps % steps_per_checkpoint:
        raise ValueError(
            f"total_steps must be a multiple of steps_per_checkpoint, received total_steps={total_steps}, "
            f"steps_per_checkpoint={steps_per_checkpoint}"
        )
    step = restore_checkpoint(model, checkpoint_dir)
    if step >= total_steps:
        return {}
    dataset = make_dataset().repeat().skip(step)
    history = model.fit(
        dataset,
        initial_epoch=step // steps_per_checkpoint,
        epochs=total_steps // steps_per_checkpoint,
        steps_per_epoch=steps_per_checkpoint,
        callbacks=[StepCheckpoint(checkpoint_dir, steps_per_checkpoint), *callbacks],
        verbose=verbose,
    )
    return history.history
