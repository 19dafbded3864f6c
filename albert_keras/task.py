"""What every model made of an AlbertBackbone and a head has in common: config and compile."""

from __future__ import annotations

from typing import Any

import keras


class AlbertTask(keras.Model):
    """Base of the task models. Subclasses build a functional graph on `self.backbone`, then set
    `self.task_config` (their constructor arguments besides the backbone) and may define defaults
    for `compile`.

    Serialization keeps the backbone as a nested object and rebuilds the head by calling the
    constructor, so that loading needs no pickles and no Lambda layers (safe mode).
    """

    task_config: dict[str, Any]

    def default_loss(self) -> Any:
        return None

    def default_metrics(self) -> list[Any] | None:
        return None

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """`compile` with this task's loss and metrics (and AdamW) where "auto" is given."""
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(learning_rate=5e-5)
        if loss == "auto":
            loss = self.default_loss()
        if metrics == "auto":
            metrics = self.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Keras skips restoring the compile state of models that override `compile`; the saved
        # config holds the resolved optimizer, loss and metrics, so replaying it is exact.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            **self.task_config,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
