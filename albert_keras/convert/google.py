"""google-research/albert TF1 checkpoints (`albert_config.json` + `model.ckpt-*`) -> this library.

The checkpoint is read with `tf.train.load_checkpoint`, by variable name. The names are those of
google-research's modeling.py and run_pretraining.py; TF1 Dense kernels are (in, out) as in Keras,
so the only reshaped tensor is the SOP classifier's `output_weights`, stored (2, hidden) and
transposed here. Optimizer slots (`adam_m`, `adam_v`, which LAMB also uses) and `global_step` are
training state, not weights, and are skipped; any other name the model has no use for is an error.
"""

from __future__ import annotations

import glob
import json
import os
import re

import keras
import numpy as np

from albert_keras.backbone import AlbertBackbone
from albert_keras.config import AlbertConfig
from albert_keras.convert.assign import assign_weights
from albert_keras.pretraining import AlbertPretrainer

CONFIG_FILE = "albert_config.json"

_EMBEDDINGS = {
    "bert/embeddings/word_embeddings": "token_embedding/embeddings",
    "bert/embeddings/position_embeddings": "position_embedding/embeddings",
    "bert/embeddings/token_type_embeddings": "segment_embedding/embeddings",
    "bert/embeddings/LayerNorm/gamma": "embeddings_layer_norm/gamma",
    "bert/embeddings/LayerNorm/beta": "embeddings_layer_norm/beta",
    "bert/encoder/embedding_hidden_mapping_in/kernel": "embedding_projection/kernel",
    "bert/encoder/embedding_hidden_mapping_in/bias": "embedding_projection/bias",
    "bert/pooler/dense/kernel": "pooler/kernel",
    "bert/pooler/dense/bias": "pooler/bias",
}
# Within bert/encoder/transformer/group_{g}/inner_group_{j}/: google suffix -> our sub-layer path.
_BLOCK = {
    "attention_1/self/query": "attention/query",
    "attention_1/self/key": "attention/key",
    "attention_1/self/value": "attention/value",
    "attention_1/output/dense": "attention/output",
    "LayerNorm": "attention/layer_norm",
    "ffn_1/intermediate/dense": "ffn/intermediate",
    "ffn_1/intermediate/output/dense": "ffn/output",
    "LayerNorm_1": "ffn/layer_norm",
}
_HEADS = {
    "cls/predictions/transform/dense/kernel": "mlm_head/dense/kernel",
    "cls/predictions/transform/dense/bias": "mlm_head/dense/bias",
    "cls/predictions/transform/LayerNorm/gamma": "mlm_head/layer_norm/gamma",
    "cls/predictions/transform/LayerNorm/beta": "mlm_head/layer_norm/beta",
    "cls/predictions/output_bias": "mlm_head/bias",
    "cls/seq_relationship/output_weights": "sop_head/dense/kernel",
    "cls/seq_relationship/output_bias": "sop_head/dense/bias",
}
_TRANSPOSED = ("cls/seq_relationship/output_weights",)
_TRAINING_STATE = re.compile(r"(^global_step$)|(/adam_[mv]$)")


def google_name_map(config: AlbertConfig, heads: bool) -> dict[str, str]:
    """google-research variable name -> our variable path (backbone, plus MLM/SOP heads if asked)."""
    if config.sharing != "all":
        raise ValueError(f"google-research ALBERT shares by group; received sharing={config.sharing!r}")
    names = dict(_EMBEDDINGS)
    for g in range(config.num_hidden_groups):
        for j in range(config.inner_group_num):
            for google, ours in _BLOCK.items():
                kind, sub = ours.split("/")
                params = ("gamma", "beta") if sub == "layer_norm" else ("kernel", "bias")
                for param in params:
                    names[f"bert/encoder/transformer/group_{g}/inner_group_{j}/{google}/{param}"] = (
                        f"group_{g}_inner_{j}_{kind}/{sub}/{param}"
                    )
    if heads:
        names.update(_HEADS)
    return names


def find_checkpoint(path: str) -> str:
    """The checkpoint prefix for a folder (its newest `model.ckpt-N`) or a given prefix."""
    if not os.path.isdir(path):
        if not os.path.exists(path + ".index"):
            raise FileNotFoundError(f"{path}: no such checkpoint (expected {path}.index)")
        return path
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(path)
    if latest:
        return latest
    steps = {}
    for index in glob.glob(os.path.join(path, "*.ckpt*.index")):
        match = re.search(r"-(\d+)\.index$", index)
        steps[int(match.group(1)) if match else -1] = index[: -len(".index")]
    if not steps:
        raise FileNotFoundError(f"{path}: no TF checkpoint (*.ckpt*.index) in this folder")
    return steps[max(steps)]


def read_google_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """Every variable of a TF checkpoint except optimizer slots and the step counter."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    return {
        name: reader.get_tensor(name)
        for name in sorted(reader.get_variable_to_shape_map())
        if not _TRAINING_STATE.search(name)
    }


def load_google_weights(model: keras.Model, variables: dict[str, np.ndarray]) -> None:
    """Loads google-research ALBERT variables into a backbone or pretrainer, checking names and shapes.

    A backbone takes the `bert/` variables and leaves the `cls/` heads out; a pretrainer needs both.
    """
    bare = isinstance(model, AlbertBackbone)
    if not bare and not isinstance(model, AlbertPretrainer):
        raise ValueError(
            f"google-research checkpoints hold a backbone and MLM/SOP heads, not a {type(model).__name__}"
        )
    config = model.config if bare else model.backbone.config
    names = google_name_map(config, heads=not bare)
    arrays, unknown = {}, []
    for name, value in variables.items():
        if name in names:
            arrays[names[name]] = value.T if name in _TRANSPOSED else value
        elif not (bare and name in _HEADS):
            unknown.append(name)
    if unknown:
        raise ValueError(f"google-research checkpoint has variables that are not ALBERT weights: {unknown}")
    assign_weights(model, arrays, source="google-research checkpoint")


def load_google_model(path: str, task: str | None = None, config_path: str | None = None) -> keras.Model:
    """Builds the model in a google-research ALBERT checkpoint and loads its weights.

    `path` is a folder holding `albert_config.json` and `model.ckpt-*` files (the newest is used), or
    a checkpoint prefix with `config_path` given. `task`: "backbone", "pretrainer", or None for a
    pretrainer when the checkpoint has the MLM/SOP heads and a backbone otherwise.
    """
    prefix = find_checkpoint(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    config_path = config_path or os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{config_path}: the checkpoint's {CONFIG_FILE} is missing")
    with open(config_path, encoding="utf-8") as f:
        config = AlbertConfig.from_google_dict(json.load(f))
    variables = read_google_checkpoint(prefix)
    if task is None:
        task = "pretrainer" if any(name.startswith("cls/") for name in variables) else "backbone"
    if task not in ("backbone", "pretrainer"):
        raise ValueError(f"task must be 'backbone' or 'pretrainer', received {task!r}")
    backbone = AlbertBackbone(config)
    model = backbone if task == "backbone" else AlbertPretrainer(backbone)
    load_google_weights(model, variables)
    return model
