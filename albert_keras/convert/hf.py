"""HF transformers ALBERT <-> this library: state-dict names, for the backbone and every task head.

Names map one to one. HF stores Linear weights as (out, in) and Keras Dense kernels as (in, out),
so exactly the weights whose path here ends in `/kernel` (all Dense kernels: listed in the tables
below) are transposed; nothing else is reshaped. HF has only ALBERT's own sharing pattern
(sharing="all").

Architectures: `AlbertModel` <-> `AlbertBackbone` (names without a prefix), and each HF task model
<-> the task here, whose backbone weights HF prefixes with "albert.".
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from albert_keras.backbone import AlbertBackbone
from albert_keras.config import AlbertConfig
from albert_keras.convert.assign import assign_weights, variables_by_path
from albert_keras.pretraining import AlbertPretrainer
from albert_keras.tasks import (
    AlbertClassifier,
    AlbertMultipleChoice,
    AlbertQuestionAnswering,
    AlbertTokenClassifier,
)

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

# HF architecture -> (our model class, its head weights: HF name -> our variable path).
ARCHITECTURES: dict[str, tuple[type, dict[str, str]]] = {
    "AlbertModel": (AlbertBackbone, {}),
    "AlbertForPreTraining": (
        AlbertPretrainer,
        {
            "predictions.dense.weight": "mlm_head/dense/kernel",
            "predictions.dense.bias": "mlm_head/dense/bias",
            "predictions.LayerNorm.weight": "mlm_head/layer_norm/gamma",
            "predictions.LayerNorm.bias": "mlm_head/layer_norm/beta",
            "predictions.bias": "mlm_head/bias",
            "sop_classifier.classifier.weight": "sop_head/dense/kernel",
            "sop_classifier.classifier.bias": "sop_head/dense/bias",
        },
    ),
    "AlbertForSequenceClassification": (
        AlbertClassifier,
        {"classifier.weight": "logits/kernel", "classifier.bias": "logits/bias"},
    ),
    "AlbertForTokenClassification": (
        AlbertTokenClassifier,
        {"classifier.weight": "logits/kernel", "classifier.bias": "logits/bias"},
    ),
    "AlbertForQuestionAnswering": (
        AlbertQuestionAnswering,
        {"qa_outputs.weight": "span_logits/kernel", "qa_outputs.bias": "span_logits/bias"},
    ),
    "AlbertForMultipleChoice": (
        AlbertMultipleChoice,
        {"classifier.weight": "choice_logit/kernel", "classifier.bias": "choice_logit/bias"},
    ),
}
# Copies HF keeps of tied weights (the MLM decoder is the word embedding, its bias is
# `predictions.bias`). They carry no information of their own: on import each must equal the
# weight it is tied to; on export they are left out, as HF's own `save_pretrained` does.
_HF_TIED = {
    "predictions.decoder.weight": _HF_PREFIX + "embeddings.word_embeddings.weight",
    "predictions.decoder.bias": "predictions.bias",
}
# HF builds these task models without the pooler (`add_pooling_layer=False`): their checkpoints have
# no pooler weights, and the task's outputs here do not use it either.
_WITHOUT_POOLER = ("AlbertForTokenClassification", "AlbertForQuestionAnswering")
_POOLER_PATHS = ("pooler/kernel", "pooler/bias")
# Every head weight name of every architecture: a backbone may be loaded from any of them.
_ALL_HEAD_NAMES = {name for _, heads in ARCHITECTURES.values() for name in heads} | set(_HF_TIED)


def hf_name_map(config: AlbertConfig) -> dict[str, str]:
    """HF `AlbertModel` state-dict name -> our variable path, for every backbone weight."""
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


def architecture_of(model: keras.Model) -> str:
    """The HF architecture name that corresponds to one of our models."""
    for architecture, (cls, _) in ARCHITECTURES.items():
        if type(model) is cls:
            return architecture
    raise ValueError(f"No HF ALBERT architecture corresponds to {type(model).__name__}")


def model_name_map(model: keras.Model) -> dict[str, str]:
    """HF state-dict name -> our variable path, for every weight of `model` (backbone or task)."""
    architecture = architecture_of(model)
    if architecture == "AlbertModel":
        return hf_name_map(model.config)
    backbone_names = {
        _HF_PREFIX + hf: ours
        for hf, ours in hf_name_map(model.backbone.config).items()
        if not (architecture in _WITHOUT_POOLER and ours in _POOLER_PATHS)
    }
    return {**backbone_names, **ARCHITECTURES[architecture][1]}


def _transposed(our_path: str) -> bool:
    """Dense kernels are the only transposed tensors (HF Linear weight is (out, in))."""
    return our_path.endswith("/kernel")


def _canonical(key: str, bare: bool) -> str:
    """A state-dict key in the naming of the model being loaded (prefix added or removed)."""
    if bare:
        return key[len(_HF_PREFIX) :] if key.startswith(_HF_PREFIX) else key
    if key in _ALL_HEAD_NAMES or key.startswith(_HF_PREFIX):
        return key
    return _HF_PREFIX + key


def load_hf_weights(model: keras.Model, state: Mapping[str, np.ndarray]) -> list[str]:
    """Loads an HF ALBERT state dict (numpy arrays) into `model`, checking every name and shape.

    A backbone accepts the state dict of any HF ALBERT model and leaves the task heads out; the
    names it left out are returned (continuing pretraining or fine-tuning from a checkpoint of
    another task). A task model needs its own architecture's heads: a missing or unknown name is an
    error that names it.
    """
    bare = isinstance(model, AlbertBackbone)
    names = model_name_map(model)
    state = {_canonical(key, bare): np.asarray(value) for key, value in state.items()}
    arrays, unknown, skipped = {}, [], []
    for key, value in state.items():
        if key.split(".", 1)[-1] in _HF_BUFFERS or key in _HF_BUFFERS:
            continue
        if key in _HF_TIED:
            tied_to = _HF_TIED[key][len(_HF_PREFIX) :] if bare and key.endswith("decoder.weight") else None
            target = state.get(tied_to or _HF_TIED[key])
            if target is not None and not np.array_equal(value, target):
                raise ValueError(f"HF state dict: {key} is not equal to {_HF_TIED[key]}, its tied weight")
            if bare:
                skipped.append(key)
            continue
        if key in names:
            arrays[names[key]] = value.T if _transposed(names[key]) else value
        elif bare and key in _ALL_HEAD_NAMES:
            skipped.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"HF state dict has names that are not {architecture_of(model)} weights: {sorted(unknown)}"
        )
    unused = _POOLER_PATHS if architecture_of(model) in _WITHOUT_POOLER else ()
    assign_weights(model, arrays, source="HF state dict", unused=unused)
    return sorted(skipped)


def load_hf_backbone_weights(backbone: AlbertBackbone, state: Mapping[str, np.ndarray]) -> list[str]:
    """Loads the backbone part of any HF ALBERT state dict; returns the head names left out."""
    return load_hf_weights(backbone, state)


def hf_state(model: keras.Model) -> dict[str, np.ndarray]:
    """The model's weights as the state dict of its HF architecture (numpy arrays)."""
    variables = variables_by_path(model)
    state = {}
    for hf, ours in model_name_map(model).items():
        value = np.asarray(variables[ours].numpy())
        state[hf] = value.T if _transposed(ours) else value
    return state


def hf_backbone_state(backbone: AlbertBackbone) -> dict[str, np.ndarray]:
    """The backbone's weights as an HF `AlbertModel` state dict (numpy arrays)."""
    return hf_state(backbone)
