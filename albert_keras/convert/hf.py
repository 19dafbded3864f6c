"""HF transformers ALBERT <-> this library, for the backbone (the `AlbertModel` state dict).

Names map one to one. HF stores Linear weights as (out, in) and Keras Dense kernels as (in, out),
so exactly the names listed in `_TRANSPOSED` are transposed; nothing else is reshaped. HF has
only ALBERT's own sharing pattern (sharing="all").
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from albert_keras.backbone import AlbertBackbone
from albert_keras.config import AlbertConfig
from albert_keras.convert.assign import assign_weights, variables_by_path

# HF prefixes the backbone with "albert." inside task models (AlbertForPreTraining, ...).
_HF_PREFIX = "albert."
# Buffers HF may keep in a state dict that are not weights.
_HF_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")

_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "token_embedding/embeddings",
    "embeddings.position_embeddings.weight": "position_embedding/embeddings",
    "embeddings.token_type_embeddings.weight": "segment_embedding/embeddings",
    "embeddings.LayerNorm.weight": "embeddings_layer_norm/gamma",
    "embeddings.LayerNorm.bias": "embeddings_layer_norm/beta",
    "encoder.embedding_hidden_mapping_in.weight": "embedding_projection/kernel",
    "encoder.embedding_hidden_mapping_in.bias": "embedding_projection/bias",
    "pooler.weight": "pooler/kernel",
    "pooler.bias": "pooler/bias",
}
# Within albert_layer_groups.{g}.albert_layers.{j}: HF suffix -> (our sub-layer kind, our suffix).
_BLOCK = {
    "attention.query": ("attention", "query"),
    "attention.key": ("attention", "key"),
    "attention.value": ("attention", "value"),
    "attention.dense": ("attention", "output"),
    "attention.LayerNorm": ("attention", "layer_norm"),
    "ffn": ("ffn", "intermediate"),
    "ffn_output": ("ffn", "output"),
    "full_layer_layer_norm": ("ffn", "layer_norm"),
}
_PARAM = {"weight": "kernel", "bias": "bias"}
_LAYER_NORM_PARAM = {"weight": "gamma", "bias": "beta"}


def hf_name_map(config: AlbertConfig) -> dict[str, str]:
    """HF state-dict name -> our variable path, for every backbone weight."""
    if config.sharing != "all":
        raise ValueError(f"HF ALBERT shares all sub-layers by group; received sharing={config.sharing!r}")
    names = dict(_EMBEDDINGS)
    for g in range(config.num_hidden_groups):
        for j in range(config.inner_group_num):
            for hf_suffix, (kind, ours) in _BLOCK.items():
                params = _LAYER_NORM_PARAM if ours == "layer_norm" else _PARAM
                for hf_param, our_param in params.items():
                    hf = f"encoder.albert_layer_groups.{g}.albert_layers.{j}.{hf_suffix}.{hf_param}"
                    names[hf] = f"group_{g}_inner_{j}_{kind}/{ours}/{our_param}"
    return names


def _transposed(our_path: str) -> bool:
    """Dense kernels are the only transposed tensors (HF Linear weight is (out, in))."""
    return our_path.endswith("/kernel")


def load_hf_backbone_weights(backbone: AlbertBackbone, state: Mapping[str, np.ndarray]) -> None:
    """Loads an HF `AlbertModel` (or `albert.`-prefixed task) state dict, as numpy arrays."""
    names = hf_name_map(backbone.config)
    arrays = {}
    unknown = []
    for key, value in state.items():
        name = key[len(_HF_PREFIX) :] if key.startswith(_HF_PREFIX) else key
        if name in _HF_BUFFERS:
            continue
        if name not in names:
            unknown.append(key)
            continue
        value = np.asarray(value)
        arrays[names[name]] = value.T if _transposed(names[name]) else value
    if unknown:
        raise ValueError(f"HF state dict has names that are not ALBERT backbone weights: {sorted(unknown)}")
    assign_weights(backbone, arrays, source="HF state dict")


def hf_backbone_state(backbone: AlbertBackbone) -> dict[str, np.ndarray]:
    """The backbone's weights as an HF `AlbertModel` state dict (numpy arrays)."""
    variables = variables_by_path(backbone)
    state = {}
    for hf, ours in hf_name_map(backbone.config).items():
        value = np.asarray(variables[ours].numpy())
        state[hf] = value.T if _transposed(ours) else value
    return state
