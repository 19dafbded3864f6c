"""Training progress for the console: a Keras callback that appends where a `fit` stands to a file.

A local run (pipeline/runners.py `run_local`) names the file in the CLINICAL_ALBERT_PROGRESS environment
variable, and its console thread (pipeline/console.py) reads it to print steps, rate and time left while
the Trainer runs in the same process. Without the variable the callback does nothing, so the Trainers'
run_fns can always add it (Kubeflow, Airflow and tests leave it unset).

The file holds JSON lines, one object each:
    {"node": "pretrain", "step": 120, "total": 200, "loss": 7.12, "time": 1733222400.5}
`step` counts optimizer steps from the start of training (a resumed fit starts at its checkpoint's step),
`total` is the steps the fit will have taken at its end (null when unknown), `loss` the running loss that
Keras reports (null when it reports none), `time` seconds since the epoch. A line is written at the first
batch, then at most every `every_s` seconds, and once at the end of the fit.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import keras
from absl import logging

from albert_keras.pretrain_loop import is_chief

PROGRESS_ENV = "CLINICAL_ALBERT_PROGRESS"
#: The least time between two lines of one fit (the first and the last are always written).
EVERY_S = 2.0


def progress_record(node: str, step: int, total: int | None, loss: float | None, when: float) -> dict:
    """One line of the progress file, as the console reads it."""
    return {"node": node, "step": step, "total": total, "loss": loss, "time": when}


class ProgressFile(keras.callbacks.Callback):
    """Appends the fit's step, total and loss to the progress file named by CLINICAL_ALBERT_PROGRESS.

    node: the pipeline node id the console shows ("pretrain", "finetune").
    total_steps: the step the fit ends at; by default Keras' epochs x steps per epoch, which is right
        for the loops here (`fit(initial_epoch=..., epochs=..., steps_per_epoch=...)`).
    path: the file; by default the environment variable's value when the callback is made, and with
        neither the callback does nothing.
    every_s: the least seconds between two lines.
    A write that fails is logged once and ends the callback's writing: progress must never stop training.
    """

    def __init__(
        self, node: str, total_steps: int | None = None, path: str | None = None, every_s: float = EVERY_S
    ):
        super().__init__()
        self.node = node
        self.total_steps = total_steps
        self.path = path if path is not None else os.environ.get(PROGRESS_ENV) or None
        self.every_s = every_s
        self._epoch = 0
        self._step = 0
        self._loss: Any = None
        self._last_written: float | None = None
        self._written_step = -1

    def on_train_begin(self, logs=None):
        self._last_written = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        steps_per_epoch = self.params.get("steps")
        self._step = self._epoch * steps_per_epoch + batch + 1 if steps_per_epoch else self._step + 1
        self._loss = (logs or {}).get("loss")
        now = time.time()
        if self._last_written is None or now - self._last_written >= self.every_s:
            self._write(now)

    def on_train_end(self, logs=None):
        if self._step != self._written_step and self._step:
            self._write(time.time())

    def _total(self) -> int | None:
        if self.total_steps is not None:
            return int(self.total_steps)
        epochs, steps = self.params.get("epochs"), self.params.get("steps")
        return int(epochs * steps) if epochs and steps else None

    def _write(self, now: float) -> None:
        self._last_written = now
        if not self.path or not is_chief(self.model):
            return
        # Converting the loss reads a tensor: done here, every few seconds, never per batch.
        loss = None if self._loss is None else float(self._loss)
        line = json.dumps(progress_record(self.node, self._step, self._total(), loss, now))
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as error:
            logging.warning("progress file %s not writable, progress not shown: %s", self.path, error)
            self.path = None
            return
        self._written_step = self._step
