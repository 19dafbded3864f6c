"""Pretraining with `fit`, checkpointed every N steps, resuming at the same step after a kill.

A checkpoint is the model's and the optimizer's state (`.weights.h5`) plus the step it was taken
at and the state of the model's random seed generators (dropout), written to temporary files and
renamed into place, so a kill mid-write leaves the previous checkpoint intact. On restart, `pretrain`
restores the newest checkpoint and skips the batches already trained on, so a deterministic dataset
gives the same run as one never interrupted. (Keras's `.weights.h5` leaves the seed generators out:
without them a resumed run's dropout masks would start again from the first step's.)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence

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
        json.dump({"step": step, "seed_states": _seed_states(model)}, f)
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
        saved = json.load(f)
    step = int(saved["step"])
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(directory, CHECKPOINT_WEIGHTS))
    restored = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    if restored != step:
        raise RuntimeError(
            f"checkpoint in {directory} is inconsistent: its weights are at optimizer step {restored}, "
            f"its state file says step {step}"
        )
    _restore_seed_states(model, saved.get("seed_states", []), directory)
    return step


def _seed_generator_states(model: keras.Model) -> list:
    """The state variables of the model's seed generators (one per dropout layer), in model order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _seed_states(model: keras.Model) -> list[dict]:
    return [
        {"path": v.path, "value": keras.ops.convert_to_numpy(v).tolist()}
        for v in _seed_generator_states(model)
    ]


def _restore_seed_states(model: keras.Model, saved: list[dict], directory: str) -> None:
    variables = _seed_generator_states(model)
    if not saved:
        return  # a checkpoint written before seed states were saved: dropout restarts its sequence
    # By order: a seed generator's name is numbered per process, so a rebuilt model's names differ.
    if len(variables) != len(saved):
        raise RuntimeError(
            f"checkpoint in {directory} holds {len(saved)} seed generator states, the model has "
            f"{len(variables)}: it was written by another model"
        )
    for variable, state in zip(variables, saved, strict=True):
        variable.assign(keras.ops.convert_to_tensor(state["value"], dtype=variable.dtype))


def checkpoint_interval(steps: int, checkpoints: int) -> int:
    """Steps between checkpoints: about `steps / checkpoints`, and a divisor of `steps` (the loop
    checkpoints at whole multiples of it and must land on the last step)."""
    every = max(1, steps // checkpoints)
    while steps % every:
        every -= 1
    return every


def repeated(make_dataset: Callable[[], object]) -> Callable[[int], object]:
    """`make_batches` for `pretrain` from a function returning a batched `tf.data.Dataset`: repeated,
    with the batches of the steps already taken skipped."""
    return lambda step: make_dataset().repeat().skip(step)


def pretrain(
    model: keras.Model,
    make_batches: Callable[[int], Iterable],
    total_steps: int,
    checkpoint_dir: str,
    steps_per_checkpoint: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> dict[str, list[float]]:
    """Trains a compiled `AlbertPretrainer` for `total_steps` batches, resuming from `checkpoint_dir`.

    `make_batches(step)` returns the endless batches from step `step` on: a `tf.data.Dataset` (see
    `repeated`) or a Python iterator of (x, y), such as `pretraining_shards.ShardReader.batches`. On
    resume it is called with the checkpoint's step, so a deterministic source gives the same run as one
    never interrupted. Returns the `fit` history of this run (empty when the checkpoint is already at
    `total_steps`).
    """
    if total_steps % steps_per_checkpoint:
        raise ValueError(
            f"total_steps must be a multiple of steps_per_checkpoint, received total_steps={total_steps}, "
            f"steps_per_checkpoint={steps_per_checkpoint}"
        )
    step = restore_checkpoint(model, checkpoint_dir)
    if step >= total_steps:
        return {}
    history = model.fit(
        make_batches(step),
        initial_epoch=step // steps_per_checkpoint,
        epochs=total_steps // steps_per_checkpoint,
        steps_per_epoch=steps_per_checkpoint,
        callbacks=[StepCheckpoint(checkpoint_dir, steps_per_checkpoint), *callbacks],
        verbose=verbose,
    )
    return history.history
