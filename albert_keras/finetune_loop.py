"""The fine-tuning recipe: linear warmup then linear decay, global-norm gradient clipping, an
evaluation on the eval split every N steps with the task's own metric, the best weights kept and
restored at the end, early stopping with a patience, and resuming after a kill.

    schedule = warmup_linear_decay(5e-5, total_steps)           # 10% warmup by default
    model.compile(optimizer=finetune_optimizer(schedule))        # AdamW, clipnorm 1.0
    result = finetune(model, make_dataset, total_steps=..., evaluate=f1_on_eval, eval_every=...,
                      patience=3, checkpoint_dir=...)

`evaluate(model)` returns the eval figure (higher is better); the caller computes it, so that it is
the task's own metric (micro-F1, accuracy, entity F1), not the loss. Every `eval_every` steps the
loop checkpoints (model and optimizer, as `pretrain_loop` does), evaluates, and when the figure
beats the best so far by more than `min_delta` saves the weights as the best. After `patience`
evaluations in a row without such a gain it stops. At the end the model holds the best weights.

The evaluation history and the best weights live in `checkpoint_dir` beside the step checkpoint, so
a run killed and started again continues where it was: with the same best, the same count towards
the patience, and the same curve. `recipe="plain"` is the baseline it replaces: no evaluation, the
last step kept.

Each evaluation's figure is added to the epoch logs under `eval_<metric_name>` before the caller's
callbacks see them, so a `keras.callbacks.TensorBoard` among `callbacks` draws the eval curve beside
the loss (one Keras epoch is `eval_every` steps).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras

from albert_keras.optimization import WarmupPolynomialDecay
from albert_keras.pretrain_loop import StepCheckpoint, is_chief, restore_checkpoint

BEST_WEIGHTS = "best.weights.h5"
EVAL_STATE = "evaluations.json"
RECIPES = ("best", "plain")


def warmup_linear_decay(
    peak_learning_rate: float, total_steps: int, warmup_fraction: float = 0.1
) -> WarmupPolynomialDecay:
    """0 -> peak over the first `warmup_fraction` of the steps, then linearly down to 0 at the end."""
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), received {warmup_fraction}")
    total_steps = max(int(total_steps), 1)
    return WarmupPolynomialDecay(
        peak_learning_rate,
        total_steps,
        warmup_steps=round(warmup_fraction * total_steps),
        decay_from_warmup=True,
    )


def finetune_optimizer(
    learning_rate: Any, weight_decay: float = 0.01, clipnorm: float | None = 1.0
) -> keras.optimizers.Optimizer:
    """AdamW, with LayerNorm scales and biases excluded from weight decay as in BERT fine-tuning, and
    the gradients clipped to a global norm of `clipnorm` (None: not clipped)."""
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, global_clipnorm=clipnorm)
    optimizer.exclude_from_weight_decay(var_names=["layer_norm", "bias", "LayerNorm"])
    return optimizer


def eval_interval(total_steps: int, evaluations: int) -> int:
    """Steps between evaluations: about `total_steps / evaluations`, and a divisor of `total_steps`
    (the loop evaluates at whole multiples of it and must land on the last step)."""
    every = max(1, int(total_steps) // max(int(evaluations), 1))
    while total_steps % every:
        every -= 1
    return every


class _EvaluateAndKeepBest(keras.callbacks.Callback):
    """At each epoch end (every `eval_every` steps): evaluates, records, keeps the best weights, and
    stops the run after `patience` evaluations without a gain."""

    def __init__(self, state: dict, directory: str, evaluate: Callable, eval_every: int, metric_name: str):
        super().__init__()
        self.state = state
        self.directory = directory
        self.evaluate = evaluate
        self.eval_every = eval_every
        self.metric_name = metric_name

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        step = (epoch + 1) * self.eval_every
        value = record_evaluation(
            self.model, self.state, self.directory, step, self.evaluate, logs.get("loss")
        )
        logs[f"eval_{self.metric_name}"] = value
        if self.state["stopped_early"]:
            self.model.stop_training = True


def record_evaluation(
    model: keras.Model, state: dict, directory: str, step: int, evaluate: Callable, loss: float | None
) -> float:
    """Evaluates the model at `step`, updates `state` (best, patience count, the curve) and saves it,
    with the weights when they are the best so far."""
    value = float(evaluate(model))
    learning_rate = model.optimizer.learning_rate
    state["evals"].append(
        {
            "step": step,
            "loss": None if loss is None else float(loss),
            "learning_rate": float(keras.ops.convert_to_numpy(learning_rate)),
            "metric": value,
        }
    )
    directory = _own_directory(model, directory)
    if state["best_step"] is None or value > state["best"] + state["min_delta"]:
        state.update(best=value, best_step=step, since_best=0)
        best = os.path.join(directory, BEST_WEIGHTS)
        model.save_weights(best + ".tmp.weights.h5", overwrite=True)
        os.replace(best + ".tmp.weights.h5", best)
    else:
        state["since_best"] += 1
    state["stopped_early"] = bool(state["patience"]) and state["since_best"] >= state["patience"]
    _save_state(directory, state)
    return value


def _own_directory(model: keras.Model, directory: str) -> str:
    """`directory` on the chief; on the other workers of a multi-worker tf.distribute run, a folder of
    their own (each evaluates and keeps its best weights, which the all-reduce keeps equal to the
    chief's, but only the chief writes the shared folder)."""
    if is_chief(model):
        return directory
    scratch = getattr(model, "_finetune_scratch_dir", None)
    if scratch is None:
        scratch = tempfile.mkdtemp(prefix="finetune-worker-")
        model._finetune_scratch_dir = scratch
    return scratch


def _save_state(directory: str, state: dict) -> None:
    path = os.path.join(directory, EVAL_STATE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1)
    os.replace(path + ".tmp", path)


def _load_state(directory: str, step: int, fresh: dict) -> dict:
    """The saved evaluation state, without evaluations after `step` (a kill between an evaluation and
    the next checkpoint leaves some); `fresh` when there is none."""
    path = os.path.join(directory, EVAL_STATE)
    if not os.path.exists(path):
        return fresh
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    state["evals"] = [e for e in state["evals"] if e["step"] <= step]
    return {**state, **{k: fresh[k] for k in ("patience", "min_delta", "metric_name")}}


class _Cycle:
    """A dataset factory made endless, for `fit`: tf.data-like objects are repeated and skipped; any
    other iterable is cycled from a fresh iterator each pass."""

    def __init__(self, make_dataset: Callable[[], Iterable], skip: int):
        self.make_dataset = make_dataset
        self.skip = skip

    def build(self):
        dataset = self.make_dataset()
        if hasattr(dataset, "repeat") and hasattr(dataset, "skip"):
            return dataset.repeat().skip(self.skip)
        return self._generator()

    def _generator(self):
        skipped = 0
        while True:
            empty = True
            for batch in self.make_dataset():
                empty = False
                if skipped < self.skip:
                    skipped += 1
                    continue
                yield batch
            if empty:
                raise ValueError("the training dataset is empty")


def finetune(
    model: keras.Model,
    make_dataset: Callable[[], Iterable],
    *,
    total_steps: int,
    evaluate: Callable[[keras.Model], float] | None,
    eval_every: int,
    checkpoint_dir: str,
    patience: int = 0,
    min_delta: float = 0.0,
    metric_name: str = "metric",
    recipe: str = "best",
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Trains a compiled model for up to `total_steps` batches (see the module docstring).

    `make_dataset()` returns a batched tf.data.Dataset or any iterable of (inputs, targets) batches;
    it is repeated. Returns {"steps_planned", "steps_trained", "best_step", "best", "stopped_early",
    "evals": [{"step", "loss", "learning_rate", "metric"}], "recipe"}; with recipe "plain", best_step
    is the last step and no evaluation runs (`evaluate` may be None).
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, received {recipe!r}")
    if eval_every < 1 or total_steps % eval_every:
        raise ValueError(
            f"total_steps must be a positive multiple of eval_every, received total_steps={total_steps}, "
            f"eval_every={eval_every} (eval_interval picks one)"
        )
    if recipe == "best" and evaluate is None:
        raise ValueError("the best-checkpoint recipe needs `evaluate`")
    os.makedirs(checkpoint_dir, exist_ok=True)
    step = restore_checkpoint(model, checkpoint_dir)
    fresh = {
        "evals": [],
        "best": None,
        "best_step": None,
        "since_best": 0,
        "stopped_early": False,
        "patience": int(patience),
        "min_delta": float(min_delta),
        "metric_name": metric_name,
    }
    state = _load_state(checkpoint_dir, step, fresh) if recipe == "best" else fresh
    own: list[keras.callbacks.Callback] = [StepCheckpoint(checkpoint_dir, eval_every)]
    if recipe == "best":
        if step and (not state["evals"] or state["evals"][-1]["step"] < step):
            record_evaluation(model, state, checkpoint_dir, step, evaluate, None)  # killed before it ran
        own.append(_EvaluateAndKeepBest(state, checkpoint_dir, evaluate, eval_every, metric_name))
    if step < total_steps and not state["stopped_early"]:
        history = model.fit(
            _Cycle(make_dataset, step).build(),
            initial_epoch=step // eval_every,
            epochs=total_steps // eval_every,
            steps_per_epoch=eval_every,
            callbacks=[*own, *callbacks],
            verbose=verbose,
        )
        step += len(history.history.get("loss", [])) * eval_every
    if recipe == "plain":
        return {
            "recipe": recipe,
            "steps_planned": total_steps,
            "steps_trained": step,
            "best_step": step,
            "best": None,
            "stopped_early": False,
            "evals": [],
        }
    model.load_weights(os.path.join(_own_directory(model, checkpoint_dir), BEST_WEIGHTS))
    return {
        "recipe": recipe,
        "steps_planned": total_steps,
        "steps_trained": state["evals"][-1]["step"] if state["evals"] else step,
        "best_step": state["best_step"],
        "best": state["best"],
        "stopped_early": state["stopped_early"],
        "evals": list(state["evals"]),
    }
