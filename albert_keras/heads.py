"""Pretraining heads, built on the backbone's own parts.

`MaskedLMHead` transforms the hidden states at the masked positions only and decodes them with
the word-embedding matrix (tied weights) plus an output bias. `SentenceOrderHead` classifies the
pooled output into in-order (0) / swapped (1). Both return float32 logits whatever the dtype policy.
"""

from __future__ import annotations

import keras
from keras import ops

from albert_keras.activations import get_activation
from albert_keras.initializers import albert_initializer


@keras.saving.register_keras_serializable(package="albert_keras")
class MaskedLMHead(keras.layers.Layer):
    """(batch, seq, hidden) hidden states + (batch, P) positions -> (batch, P, vocab) logits.

    Not serializable on its own: it holds the backbone's `token_embedding` layer, and the task
    models that own it rebuild it from the backbone.
    """

    def __init__(
        self,
        token_embedding: keras.layers.Embedding,
        activation: str = "gelu_new",
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.activation = activation
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.vocab_size = token_embedding.input_dim
        self.embedding_size = token_embedding.output_dim
        self.dense = keras.layers.Dense(
            self.embedding_size,
            activation=get_activation(activation),
            kernel_initializer=albert_initializer(initializer_range),
            dtype=self.dtype_policy,
            name="dense",
        )
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="layer_norm"
        )

    def build(self, sequence_output_shape, mask_positions_shape=None):
        self.dense.build(sequence_output_shape)
        self.layer_norm.build((*tuple(sequence_output_shape[:-1]), self.embedding_size))
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")

    def call(self, sequence_output, mask_positions):
        positions = ops.cast(mask_positions, "int32")[:, :, None]  # (batch, P, 1)
        x = ops.take_along_axis(sequence_output, positions, axis=1)  # (batch, P, hidden)
        x = self.layer_norm(self.dense(x))  # (batch, P, E)
        embeddings = ops.cast(self.token_embedding.embeddings, self.compute_dtype)  # (vocab, E)
        logits = ops.einsum("bpe,ve->bpv", x, embeddings)
        return ops.cast(logits, "float32") + ops.cast(self.bias, "float32")

    def compute_output_shape(self, sequence_output_shape, mask_positions_shape):
        return (sequence_output_shape[0], mask_positions_shape[1], self.vocab_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            activation=self.activation,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        return config


@keras.saving.register_keras_serializable(package="albert_keras")
class SentenceOrderHead(keras.layers.Layer):
    """(batch, hidden) pooled output -> (batch, 2) logits: 0 = in order, 1 = swapped."""

    def __init__(self, initializer_range: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range
        self.dense = keras.layers.Dense(
            2, kernel_initializer=albert_initializer(initializer_range), dtype=self.dtype_policy, name="dense"
        )

    def build(self, pooled_output_shape):
        self.dense.build(pooled_output_shape)

    def call(self, pooled_output):
        return ops.cast(self.dense(pooled_output), "float32")

    def compute_output_shape(self, pooled_output_shape):
        return (pooled_output_shape[0], 2)

    def get_config(self):
        config = super().get_config()
        config.update(initializer_range=self.initializer_range)
        return config
