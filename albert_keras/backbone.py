"""The ALBERT encoder: factorized embeddings, shared transformer layers, tanh pooler."""

from __future__ import annotations

import keras

from albert_keras.config import AlbertConfig
from albert_keras.embeddings import PositionEmbedding, SmallTableEmbedding
from albert_keras.encoder import layer_plan
from albert_keras.initializers import albert_initializer


@keras.saving.register_keras_serializable(package="albert_keras")
class AlbertBackbone(keras.Model):
    """ALBERT as google-research/albert defines it.

    Inputs (a dict): `token_ids`, `segment_ids`, `padding_mask` (1 for real tokens, 0 for padding),
    each (batch, seq) int32. Outputs (a dict): `sequence_output` (batch, seq, hidden) and
    `pooled_output` (batch, hidden), tanh(dense(first token)).

    Padding keys never receive attention, so outputs at real tokens do not depend on what padding
    holds; outputs at padding positions are computed but meaningless.
    """

    def __init__(self, config: AlbertConfig | dict, dtype=None, **kwargs):
        if isinstance(config, dict):
            config = AlbertConfig.from_dict(config)
        init = albert_initializer(config.initializer_range)

        # === Layers ===
        self.token_embedding = keras.layers.Embedding(
            config.vocab_size,
            config.embedding_size,
            embeddings_initializer=init,
            dtype=dtype,
            name="token_embedding",
        )
        self.position_embedding = PositionEmbedding(
            config.max_position_embeddings,
            config.embedding_size,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name="position_embedding",
        )
        self.segment_embedding = SmallTableEmbedding(
            config.type_vocab_size,
            config.embedding_size,
            embeddings_initializer=init,
            dtype=dtype,
            name="segment_embedding",
        )
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            epsilon=config.layer_norm_eps, dtype=dtype, name="embeddings_layer_norm"
        )
        self.embeddings_dropout = keras.layers.Dropout(
            config.hidden_dropout_prob, dtype=dtype, name="embeddings_dropout"
        )
        self.embedding_projection = keras.layers.Dense(
            config.hidden_size, kernel_initializer=init, dtype=dtype, name="embedding_projection"
        )
        # For each virtual layer, its (attention, ffn) blocks; shared objects share weights.
        self.transformer_layers = layer_plan(config, dtype=dtype)
        self.pooler = keras.layers.Dense(
            config.hidden_size, activation="tanh", kernel_initializer=init, dtype=dtype, name="pooler"
        )

        # === Graph ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        segment_ids = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")

        words = self.token_embedding(token_ids)  # (batch, seq, E)
        x = words + self.position_embedding(words) + self.segment_embedding(segment_ids)
        x = self.embeddings_dropout(self.embeddings_layer_norm(x))
        x = self.embedding_projection(x)  # (batch, seq, H)
        for blocks in self.transformer_layers:
            for attention, feedforward in blocks:
                x = feedforward(attention(x, padding_mask=padding_mask))
        pooled = self.pooler(x[:, 0, :])  # (batch, H)

        super().__init__(
            inputs={"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
            outputs={"sequence_output": x, "pooled_output": pooled},
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        self.config = config

    def get_config(self):
        return {
            "config": self.config.to_dict(),
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    @classmethod
    def from_preset(cls, name: str, dtype=None, **overrides) -> AlbertBackbone:
        """A randomly initialized backbone of a named architecture (see config.PRESETS)."""
        return cls(AlbertConfig.preset(name, **overrides), dtype=dtype)
