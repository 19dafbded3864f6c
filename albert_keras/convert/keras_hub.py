"""keras-hub `AlbertBackbone` -> this library.

Works on the weights of a keras-hub model object; only `load_keras_hub_preset` imports keras_hub
(which imports TensorFlow). keras-hub keeps attention kernels per head, (hidden, heads, head_size) and
(heads, head_size, hidden); they are reshaped to the (hidden, hidden) Dense kernels used here.
"""

from __future__ import annotations

import re

import numpy as np

from albert_keras.backbone import AlbertBackbone
from albert_keras.config import AlbertConfig
from albert_keras.convert.assign import assign_weights

_SAME = (
    "token_embedding/embeddings",
    "position_embedding/embeddings",
    "segment_embedding/embeddings",
    "embeddings_layer_norm/gamma",
    "embeddings_layer_norm/beta",
    "embedding_projection/kernel",
    "embedding_projection/bias",
)
_RENAMED = {"pooled_dense/kernel": "pooler/kernel", "pooled_dense/bias": "pooler/bias"}
_BLOCK = {
    "self_attention_layer/query": "attention/query",
    "self_attention_layer/key": "attention/key",
    "self_attention_layer/value": "attention/value",
    "self_attention_layer/attention_output": "attention/output",
    "self_attention_layer_norm": "attention/layer_norm",
    "feedforward_intermediate_dense": "ffn/intermediate",
    "feedforward_output_dense": "ffn/output",
    "feedforward_layer_norm": "ffn/layer_norm",
}
# The only tensors whose layout differs: per-head attention kernels and biases.
_PER_HEAD = re.compile(r"_attention/(query|key|value|output)/(kernel|bias)$")
_BLOCK_PATH = re.compile(r"^group_(\d+)_inner_layer_(\d+)/(.+)/(kernel|bias|gamma|beta)$")


def our_path(keras_hub_path: str) -> str:
    """Our variable path for a keras-hub AlbertBackbone variable path."""
    if keras_hub_path in _SAME:
        return keras_hub_path
    if keras_hub_path in _RENAMED:
        return _RENAMED[keras_hub_path]
    match = _BLOCK_PATH.match(keras_hub_path)
    if not match or match.group(3) not in _BLOCK:
        raise ValueError(f"Not a keras-hub AlbertBackbone weight: {keras_hub_path!r}")
    group, inner, layer, param = match.groups()
    kind, sub = _BLOCK[layer].split("/")
    return f"group_{group}_inner_{inner}_{kind}/{sub}/{param}"


def load_keras_hub_backbone_weights(backbone: AlbertBackbone, keras_hub_backbone) -> None:
    """Copies every weight of a keras-hub AlbertBackbone into `backbone` (same architecture)."""
    if backbone.config.sharing != "all":
        raise ValueError(
            f"keras-hub ALBERT shares by group only; received sharing={backbone.config.sharing!r}"
        )
    ours = {v.path: tuple(v.shape) for v in backbone.weights}
    arrays = {}
    for variable in keras_hub_backbone.weights:
        path = our_path(variable.path)
        value = np.asarray(variable.numpy())
        if _PER_HEAD.search(path) and path in ours:
            value = value.reshape(ours[path])  # row-major flatten of the head axes
        arrays[path] = value
    assign_weights(backbone, arrays, source="keras-hub AlbertBackbone")


# keras-hub AlbertBackbone constructor argument -> our AlbertConfig field(s).
_CONFIG_FIELDS = {
    "vocabulary_size": ("vocab_size",),
    "num_layers": ("num_hidden_layers",),
    "num_heads": ("num_attention_heads",),
    "num_groups": ("num_hidden_groups",),
    "num_inner_repetitions": ("inner_group_num",),
    "embedding_dim": ("embedding_size",),
    "hidden_dim": ("hidden_size",),
    "intermediate_dim": ("intermediate_size",),
    "dropout": ("hidden_dropout_prob", "attention_probs_dropout_prob"),
    "max_sequence_length": ("max_position_embeddings",),
    "num_segments": ("type_vocab_size",),
}
# Arguments every Keras layer has; they say nothing about the architecture.
_LAYER_ARGS = ("name", "trainable", "dtype")


def config_from_keras_hub(keras_hub_config: dict) -> AlbertConfig:
    """Our config for a keras-hub AlbertBackbone's `get_config()` (its activation is the tanh GELU)."""
    fields, unknown = {}, []
    for name, value in keras_hub_config.items():
        if name in _CONFIG_FIELDS:
            fields.update(dict.fromkeys(_CONFIG_FIELDS[name], value))
        elif name not in _LAYER_ARGS:
            unknown.append(name)
    if unknown:
        raise ValueError(f"keras-hub AlbertBackbone config has arguments unknown here: {unknown}")
    return AlbertConfig(**fields, hidden_act="gelu_new")


def load_keras_hub_preset(preset: str) -> AlbertBackbone:
    """Builds our backbone from a keras-hub ALBERT preset (a local preset folder, as written by
    `save_to_preset`: config.json + model.weights.h5), checking every weight by name and shape.

    This is the one function here that imports keras_hub (and so TensorFlow)."""
    import keras_hub

    theirs = keras_hub.models.AlbertBackbone.from_preset(preset)
    ours = AlbertBackbone(config_from_keras_hub(theirs.get_config()))
    load_keras_hub_backbone_weights(ours, theirs)
    return ours
