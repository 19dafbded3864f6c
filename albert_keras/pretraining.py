"""The pretraining model: masked LM + sentence-order prediction on one backbone."""

from __future__ import annotations

import keras
from keras import ops

from albert_keras.backbone import AlbertBackbone
from albert_keras.heads import MaskedLMHead, SentenceOrderHead
from albert_keras.task import AlbertTask


@keras.saving.register_keras_serializable(package="albert_keras")
class AlbertPretrainer(AlbertTask):
    """ALBERT's pretraining model, with its loss.

    Inputs: the backbone's three inputs plus `mask_positions` (batch, P) int32, the positions whose
    tokens were masked (padded with 0 where a sequence has fewer than P).
    Outputs: `mlm_logits` (batch, P, vocab) and `sop_logits` (batch, 2), float32.
    Targets `y` for `fit`: `mlm_labels` (batch, P) original token ids, `mlm_weights` (batch, P) 1.0
    for real predictions and 0.0 for padding, `sop_labels` (batch,) 0 in order / 1 swapped.
    Loss, as google-research/albert: sum(w * CE_mlm) / (sum(w) + 1e-5) + mean(CE_sop).
    """

    def __init__(self, backbone: AlbertBackbone, **kwargs):
        config = backbone.config
        # === Layers ===
        self.backbone = backbone
        self.mlm_head = MaskedLMHead(
            backbone.token_embedding,
            activation=config.hidden_act,
            layer_norm_eps=config.layer_norm_eps,
            initializer_range=config.initializer_range,
            dtype=backbone.dtype_policy,
            name="mlm_head",
        )
        self.sop_head = SentenceOrderHead(
            initializer_range=config.initializer_range, dtype=backbone.dtype_policy, name="sop_head"
        )

        # === Graph ===
        inputs = dict(backbone.input)
        inputs["mask_positions"] = keras.Input(shape=(None,), dtype="int32", name="mask_positions")
        encoded = backbone({k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")})
        outputs = {
            "mlm_logits": self.mlm_head(encoded["sequence_output"], inputs["mask_positions"]),
            "sop_logits": self.sop_head(encoded["pooled_output"]),
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.task_config = {}

        # === Metrics (reported by fit and evaluate) ===
        self.mlm_loss_tracker = keras.metrics.Mean(name="mlm_loss")
        self.sop_loss_tracker = keras.metrics.Mean(name="sop_loss")
        self.mlm_accuracy = keras.metrics.SparseCategoricalAccuracy(name="mlm_accuracy")
        self.sop_accuracy = keras.metrics.SparseCategoricalAccuracy(name="sop_accuracy")

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """MLM accuracy over real predictions (weight 1) only, SOP accuracy, and the two losses."""
        mlm_loss, sop_loss = pretraining_losses(y, y_pred)
        self.mlm_loss_tracker.update_state(mlm_loss)
        self.sop_loss_tracker.update_state(sop_loss)
        self.mlm_accuracy.update_state(y["mlm_labels"], y_pred["mlm_logits"], sample_weight=y["mlm_weights"])
        self.sop_accuracy.update_state(y["sop_labels"], y_pred["sop_logits"])
        return self.get_metrics_result()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        mlm_loss, sop_loss = pretraining_losses(y, y_pred)
        loss = mlm_loss + sop_loss
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return _per_replica_share(loss)


def _per_replica_share(loss):
    """Under a TensorFlow distribution strategy each replica's loss is summed across replicas (as
    Keras's own Loss objects expect): divide by the replica count so the total is the mean."""
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / replicas if replicas > 1 else loss


def pretraining_losses(y: dict, y_pred: dict):
    """(masked-LM loss, sentence-order loss), each a float32 scalar."""
    mlm_ce = keras.losses.sparse_categorical_crossentropy(
        y["mlm_labels"], y_pred["mlm_logits"], from_logits=True
    )  # (batch, P)
    weights = ops.cast(y["mlm_weights"], "float32")
    mlm_loss = ops.sum(mlm_ce * weights) / (ops.sum(weights) + 1e-5)
    sop_ce = keras.losses.sparse_categorical_crossentropy(
        y["sop_labels"], y_pred["sop_logits"], from_logits=True
    )
    return mlm_loss, ops.mean(sop_ce)
