"""ALBERT's transformer: post-LN self-attention and feed-forward sub-layers, and how layers share them.

A block is `FeedForward(SelfAttention(x))`, each sub-layer `LayerNorm(x + Dropout(f(x)))` as in
google-research/albert and BERT. Sharing is plain Python structure: `layer_plan(config)` builds the
distinct sub-layer objects once and returns, for every virtual layer, the list of (attention, ffn)
pairs it applies; a sub-layer object that appears in several entries shares its weights.
"""

from __future__ import annotations

import math
import os

import keras
from keras import ops

from albert_keras.activations import get_activation
from albert_keras.config import AlbertConfig
from albert_keras.initializers import albert_initializer

# Added to the attention scores of padding keys; large enough that exp() underflows to 0 in float32.
_MASK_NEGATIVE = -1e9


@keras.saving.register_keras_serializable(package="albert_keras")
class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention with output projection, residual and LayerNorm (post-LN)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range

        def dense(name):
            return keras.layers.Dense(
                hidden_size,
                kernel_initializer=albert_initializer(initializer_range),
                dtype=self.dtype_policy,
                name=name,
            )

        self.query = dense("query")
        self.key = dense("key")
        self.value = dense("value")
        self.output_dense = dense("output")
        self.probs_dropout = keras.layers.Dropout(attention_dropout, dtype=self.dtype_policy)
        self.output_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="layer_norm"
        )

    def build(self, input_shape):
        for layer in (self.query, self.key, self.value, self.output_dense):
            layer.build(input_shape)
        self.layer_norm.build(input_shape)

    def _split_heads(self, x):
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        return ops.reshape(x, (batch, seq, self.num_heads, self.head_size))  # (batch, seq, heads, d)

    def call(self, x, padding_mask, training=None):
        q = self._split_heads(self.query(x))  # (batch, seq, heads, d)
        k = self._split_heads(self.key(x))
        v = self._split_heads(self.value(x))
        if keras.backend.backend() == "jax" and not (training and self.attention_dropout > 0):
            context = _fused_attention(q, k, v, padding_mask)
        else:
            context = self._attention(q, k, v, padding_mask, training=training)
        context = ops.reshape(context, ops.shape(x))  # (batch, seq, hidden)
        attended = self.output_dropout(self.output_dense(context), training=training)
        return self.layer_norm(x + attended)

    def _attention(self, q, k, v, padding_mask, training=None):
        """Attention written out in ops: runs on every backend and is what the TensorFlow serving
        graph holds (plain einsum/softmax ops that any model server loads)."""
        scores = ops.einsum("btnd,bsnd->bnts", q, k)  # (batch, heads, query, key)
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_size)
        key_is_padding = ops.equal(ops.cast(padding_mask, "int32"), 0)[:, None, None, :]
        scores = ops.where(key_is_padding, _MASK_NEGATIVE, scores)
        probs = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        probs = self.probs_dropout(probs, training=training)
        return ops.einsum("bnts,bsnd->btnd", probs, v)  # (batch, query, heads, d)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            num_heads=self.num_heads,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        return config


@keras.saving.register_keras_serializable(package="albert_keras")
class FeedForward(keras.layers.Layer):
    """Dense(intermediate) -> activation -> Dense(hidden) -> dropout -> residual -> LayerNorm."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        activation: str = "gelu_new",
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-12,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.dropout = dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range

        self.intermediate = keras.layers.Dense(
            intermediate_size,
            activation=get_activation(activation),
            kernel_initializer=albert_initializer(initializer_range),
            dtype=self.dtype_policy,
            name="intermediate",
        )
        self.output_dense = keras.layers.Dense(
            hidden_size,
            kernel_initializer=albert_initializer(initializer_range),
            dtype=self.dtype_policy,
            name="output",
        )
        self.output_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, dtype=self.dtype_policy, name="layer_norm"
        )

    def build(self, input_shape):
        self.intermediate.build(input_shape)
        self.output_dense.build((*tuple(input_shape[:-1]), self.intermediate_size))
        self.layer_norm.build(input_shape)

    def call(self, x, training=None):
        h = self.output_dense(self.intermediate(x))
        return self.layer_norm(x + self.output_dropout(h, training=training))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            activation=self.activation,
            dropout=self.dropout,
            layer_norm_eps=self.layer_norm_eps,
            initializer_range=self.initializer_range,
        )
        return config


def _fused_attention(q, k, v, padding_mask):
    """Attention through `jax.nn.dot_product_attention` (JAX backend only): the result of
    `SelfAttention._attention` without dropout on the probabilities.

    On a GPU in bfloat16/float16 it runs cuDNN's fused (flash) kernel, which never stores the
    (batch, heads, seq, seq) scores and skips the padded key blocks. cuDNN takes padding as a length
    per sequence, so there `padding_mask` must mark a prefix of each row (padding at the end), as
    every input this project builds does. Elsewhere it is XLA's attention with the mask itself.
    `ALBERT_KERAS_ATTENTION=xla` forces the XLA path (to compare or to rule the kernel out).
    """
    import jax

    fused = (
        os.environ.get("ALBERT_KERAS_ATTENTION", "auto") != "xla"
        and jax.devices()[0].platform == "gpu"
        and q.dtype in (jax.numpy.bfloat16, jax.numpy.float16)
        and q.shape[-1] % 8 == 0
    )
    attend = ops.not_equal(ops.cast(padding_mask, "int32"), 0)  # (batch, key)
    if fused:
        lengths = ops.sum(ops.cast(attend, "int32"), axis=1)  # (batch,)
        return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="cudnn")
    return jax.nn.dot_product_attention(q, k, v, mask=attend[:, None, None, :], implementation="xla")


Block = tuple[SelfAttention, FeedForward]


def layer_plan(config: AlbertConfig, dtype=None) -> list[list[Block]]:
    """For each virtual layer, the (attention, ffn) pairs it applies in order; see SHARING_MODES.

    Shared sub-layers are named `group_{g}_inner_{j}_{kind}`, per-layer ones `layer_{i}_inner_{j}_{kind}`.
    """

    def attention(name):
        return SelfAttention(
            config.hidden_size,
            config.num_attention_heads,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name=name,
        )

    def feedforward(name):
        return FeedForward(
            config.hidden_size,
            config.intermediate_size,
            activation=config.hidden_act,
            dropout=config.hidden_dropout_prob,
            layer_norm_eps=config.layer_norm_eps,
            initializer_range=config.initializer_range,
            dtype=dtype,
            name=name,
        )

    share_attention = config.sharing in ("all", "attention")
    share_ffn = config.sharing in ("all", "ffn")
    inner = range(config.inner_group_num)
    groups = range(config.num_hidden_groups)
    shared_attention = (
        {(g, j): attention(f"group_{g}_inner_{j}_attention") for g in groups for j in inner}
        if share_attention
        else {}
    )
    shared_ffn = (
        {(g, j): feedforward(f"group_{g}_inner_{j}_ffn") for g in groups for j in inner} if share_ffn else {}
    )

    plan = []
    for i in range(config.num_hidden_layers):
        g = config.group_of_layer(i)
        blocks = []
        for j in inner:
            attn = shared_attention.get((g, j)) or attention(f"layer_{i}_inner_{j}_attention")
            ffn = shared_ffn.get((g, j)) or feedforward(f"layer_{i}_inner_{j}_ffn")
            blocks.append((attn, ffn))
        plan.append(blocks)
    return plan
