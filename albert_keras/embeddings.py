"""Learned absolute position embeddings."""

from __future__ import annotations

import keras
from keras import ops

from albert_keras.initializers import albert_initializer


@keras.saving.register_keras_serializable(package="albert_keras")
class PositionEmbedding(keras.layers.Layer):
    """Adds nothing and looks nothing up: returns the first `seq_len` rows of a (max_len, dim) table.

    Called on the word embeddings (batch, seq, dim) and returns (seq, dim), broadcast by the caller.
    """

    def __init__(self, max_length: int, output_dim: int, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.output_dim = output_dim
        self.initializer_range = initializer_range

    def build(self, input_shape):
        seq_len = input_shape[1]
        if seq_len is not None and seq_len > self.max_length:
            raise ValueError(f"Sequence length {seq_len} exceeds max_position_embeddings={self.max_length}")
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_length, self.output_dim),
            initializer=albert_initializer(self.initializer_range),
        )

    def call(self, inputs):
        seq_len = ops.shape(inputs)[1]
        if isinstance(seq_len, int) and seq_len > self.max_length:  # known unless traced with dynamic shape
            raise ValueError(f"Sequence length {seq_len} exceeds max_position_embeddings={self.max_length}")
        return ops.cast(self.embeddings[:seq_len], self.compute_dtype)  # (seq, dim)

    def compute_output_shape(self, input_shape):
        return (input_shape[1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            max_length=self.max_length,
            output_dim=self.output_dim,
            initializer_range=self.initializer_range,
        )
        return config


@keras.saving.register_keras_serializable(package="albert_keras")
class SmallTableEmbedding(keras.layers.Embedding):
    """An Embedding for tables of a few rows (token types): a one-hot matmul instead of a gather.

    Same weights and outputs as `keras.layers.Embedding`; what changes is the gradient. A gather's
    gradient scatter-adds every token's row into the table, and on a GPU the adds into the same two
    rows serialize: that scatter took 64 ms of a 116 ms pretraining step (albert-base, 64 x 512, H100,
    bench/RESULTS.md). The one-hot matmul's gradient is a matmul, which costs next to nothing.
    """

    def call(self, inputs):
        one_hot = ops.one_hot(ops.cast(inputs, "int32"), self.input_dim, dtype=self.compute_dtype)
        return ops.matmul(one_hot, ops.cast(self.embeddings, self.compute_dtype))  # (..., dim)
