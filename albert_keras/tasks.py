"""Fine-tuning models: sequence classification, token classification, extractive QA, multiple choice.

Each takes a built `AlbertBackbone`, adds a small head, and returns float32 logits. `compile()`
with no arguments picks the loss and metrics that fit the task.
"""

from __future__ import annotations

import keras
from keras import ops

from albert_keras.backbone import AlbertBackbone
from albert_keras.initializers import albert_initializer
from albert_keras.task import AlbertTask

_INPUTS = ("token_ids", "segment_ids", "padding_mask")
# Label id that token-level losses skip (padding, special tokens, continuation pieces), as in HF.
IGNORE_LABEL = -100


def _logits_layer(backbone: AlbertBackbone, units: int, name: str) -> keras.layers.Dense:
    return keras.layers.Dense(
        units,
        kernel_initializer=albert_initializer(backbone.config.initializer_range),
        dtype=backbone.dtype_policy,
        name=name,
    )


@keras.saving.register_keras_serializable(package="albert_keras")
class AlbertClassifier(AlbertTask):
    """Sequence classification over the pooled output.

    problem_type "single_label": softmax over `num_labels` classes, integer targets.
    "multi_label": independent sigmoids, multi-hot float targets. "regression": `num_labels`
    real-valued outputs, mean squared error.
    """

    PROBLEM_TYPES = ("single_label", "multi_label", "regression")

    def __init__(
        self,
        backbone: AlbertBackbone,
        num_labels: int,
        problem_type: str = "single_label",
        dropout: float = 0.1,
        **kwargs,
    ):
        if problem_type not in self.PROBLEM_TYPES:
            raise ValueError(
                f"problem_type must be one of {self.PROBLEM_TYPES}, received problem_type={problem_type!r}"
            )
        if num_labels < 1 or (problem_type == "single_label" and num_labels < 2):
            raise ValueError(
                f"num_labels must be >= 2 for single_label and >= 1 otherwise; received "
                f"num_labels={num_labels} with problem_type={problem_type!r}"
            )
        # === Layers ===
        self.backbone = backbone
        self.output_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="output_dropout"
        )
        self.output_dense = _logits_layer(backbone, num_labels, "logits")

        # === Graph ===
        inputs = backbone.input
        pooled = backbone(inputs)["pooled_output"]
        logits = ops.cast(self.output_dense(self.output_dropout(pooled)), "float32")  # (batch, labels)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.task_config = dict(num_labels=num_labels, problem_type=problem_type, dropout=dropout)

    def default_loss(self):
        problem_type = self.task_config["problem_type"]
        if problem_type == "single_label":
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if problem_type == "multi_label":
            return keras.losses.BinaryCrossentropy(from_logits=True)
        return keras.losses.MeanSquaredError()

    def default_metrics(self):
        problem_type = self.task_config["problem_type"]
        if problem_type == "single_label":
            return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if problem_type == "multi_label":
            return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]  # logits: 0 is p=0.5
        return [keras.metrics.MeanAbsoluteError(name="mae")]


def bio_labels(entity_types: list[str]) -> list[str]:
    """BIO tag names: "O", then "B-T" and "I-T" for each entity type T, in the order given."""
    return ["O"] + [f"{prefix}-{t}" for t in entity_types for prefix in ("B", "I")]


@keras.saving.register_keras_serializable(package="albert_keras")
class AlbertTokenClassifier(AlbertTask):
    """Per-token classification (BIO tagging) over the sequence output.

    Targets are (batch, seq) tag ids, IGNORE_LABEL (-100) where no tag applies (padding, special
    tokens, continuation pieces); the default loss skips those positions.
    """

    def __init__(self, backbone: AlbertBackbone, num_labels: int, dropout: float = 0.1, **kwargs):
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, received num_labels={num_labels}")
        # === Layers ===
        self.backbone = backbone
        self.output_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="output_dropout"
        )
        self.output_dense = _logits_layer(backbone, num_labels, "logits")

        # === Graph ===
        inputs = backbone.input
        sequence = backbone(inputs)["sequence_output"]
        logits = ops.cast(self.output_dense(self.output_dropout(sequence)), "float32")  # (batch, seq, labels)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.task_config = dict(num_labels=num_labels, dropout=dropout)

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_LABEL)


@keras.saving.register_keras_serializable(package="albert_keras")
class AlbertQuestionAnswering(AlbertTask):
    """Extractive QA: start and end logits (batch, seq) over the sequence output.

    Padding positions get a large negative logit, so a span never starts or ends in padding.
    Targets: `start_logits` and `end_logits`, each (batch,) token positions.
    """

    def __init__(self, backbone: AlbertBackbone, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.span_dense = _logits_layer(backbone, 2, "span_logits")

        # === Graph ===
        inputs = backbone.input
        sequence = backbone(inputs)["sequence_output"]
        logits = ops.cast(self.span_dense(sequence), "float32")  # (batch, seq, 2)
        is_padding = ops.equal(inputs["padding_mask"], 0)
        start = ops.where(is_padding, -1e9, logits[:, :, 0])
        end = ops.where(is_padding, -1e9, logits[:, :, 1])
        super().__init__(inputs=inputs, outputs={"start_logits": start, "end_logits": end}, **kwargs)

        # === Config ===
        self.task_config = {}

    def default_loss(self):
        return {
            "start_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "end_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        }


@keras.saving.register_keras_serializable(package="albert_keras")
class FoldChoices(keras.layers.Layer):
    """(batch, choices, seq) -> (batch * choices, seq)."""

    def call(self, x):
        return ops.reshape(x, (-1, ops.shape(x)[-1]))

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1])


@keras.saving.register_keras_serializable(package="albert_keras")
class UnfoldChoices(keras.layers.Layer):
    """(batch * choices, 1) scores and the (batch, choices, seq) input -> (batch, choices)."""

    def call(self, scores, reference):
        return ops.reshape(scores, ops.shape(reference)[:2])

    def compute_output_shape(self, scores_shape, reference_shape):
        return tuple(reference_shape[:2])


@keras.saving.register_keras_serializable(package="albert_keras")
class AlbertMultipleChoice(AlbertTask):
    """Scores each of several (context, choice) sequences; softmax over choices.

    Inputs are the backbone's three inputs with a choices axis: (batch, choices, seq). The number
    of choices may differ between batches. Targets: (batch,) index of the right choice.
    """

    def __init__(self, backbone: AlbertBackbone, dropout: float = 0.1, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.fold = FoldChoices(name="fold_choices")
        self.unfold = UnfoldChoices(name="unfold_choices")
        self.output_dropout = keras.layers.Dropout(
            dropout, dtype=backbone.dtype_policy, name="output_dropout"
        )
        self.output_dense = _logits_layer(backbone, 1, "choice_logit")

        # === Graph ===
        inputs = {name: keras.Input(shape=(None, None), dtype="int32", name=name) for name in _INPUTS}
        pooled = backbone({name: self.fold(inputs[name]) for name in _INPUTS})["pooled_output"]
        scores = self.output_dense(self.output_dropout(pooled))  # (batch * choices, 1)
        logits = ops.cast(self.unfold(scores, inputs["token_ids"]), "float32")  # (batch, choices)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.task_config = dict(dropout=dropout)

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def default_metrics(self):
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
