"""HF checkpoint folders: `config.json` plus `model.safetensors` (or shards with an index), or a torch
`pytorch_model.bin`; import into this library's models and export from them.

    model = load_hf_model("albert-base-v2/")              # the class its config.json names
    backbone = load_hf_model("albert-base-v2/", task="backbone")   # heads left out
    save_hf_model(classifier, "export/", label_names=[...])  # loads in transformers

Export writes safetensors only (the format transformers prefers; no torch needed here).
"""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np

from albert_keras.backbone import AlbertBackbone
from albert_keras.config import AlbertConfig
from albert_keras.convert.hf import ARCHITECTURES, architecture_of, hf_state, load_hf_weights
from albert_keras.convert.torch_pickle import load_torch_state_dict

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "pytorch_model.bin"

# config.json fields that belong to HF's generic PretrainedConfig or to a task head, not to the
# ALBERT architecture; the task fields are read by `_task_kwargs`.
_TASK_FIELDS = ("id2label", "label2id", "num_labels", "problem_type", "classifier_dropout_prob")
_GENERIC_FIELDS = (
    "tie_word_embeddings",
    "finetuning_task",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "use_return_dict",
    "torchscript",
    "use_cache",
    "is_decoder",
    "is_encoder_decoder",
    "add_cross_attention",
    "chunk_size_feed_forward",
    "tokenizer_class",
    "prefix",
    "task_specific_params",
    "sep_token_id",
    "decoder_start_token_id",
)
_PROBLEM_TYPES = {
    "single_label_classification": "single_label",
    "multi_label_classification": "multi_label",
    "regression": "regression",
}
_ALBERT_TOKENS = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def read_hf_config(directory: str) -> tuple[AlbertConfig, dict[str, Any]]:
    """The ALBERT config of an HF checkpoint folder, and the raw `config.json` contents."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; not an HF checkpoint folder")
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if raw.get("model_type", "albert") != "albert":
        raise ValueError(f"{path}: model_type is {raw['model_type']!r}, not 'albert'")
    fields = {k: v for k, v in raw.items() if k not in _TASK_FIELDS and k not in _GENERIC_FIELDS}
    try:
        return AlbertConfig.from_dict(fields), raw
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def read_hf_state(directory: str) -> dict[str, np.ndarray]:
    """Every tensor of an HF checkpoint folder, by name (safetensors preferred over torch)."""
    from safetensors.numpy import load_file

    def from_index(index_file: str, load) -> dict[str, np.ndarray]:
        with open(os.path.join(directory, index_file), encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state: dict[str, np.ndarray] = {}
        for shard in shards:
            state.update(load(os.path.join(directory, shard)))
        return state

    candidates = (
        (SAFETENSORS_FILE, lambda: load_file(os.path.join(directory, SAFETENSORS_FILE))),
        (SAFETENSORS_FILE + ".index.json", lambda: from_index(SAFETENSORS_FILE + ".index.json", load_file)),
        (TORCH_FILE, lambda: load_torch_state_dict(os.path.join(directory, TORCH_FILE))),
        (TORCH_FILE + ".index.json", lambda: from_index(TORCH_FILE + ".index.json", load_torch_state_dict)),
    )
    for name, load in candidates:
        if os.path.exists(os.path.join(directory, name)):
            return load()
    raise FileNotFoundError(
        f"{directory}: no weights file; expected one of {[name for name, _ in candidates]}"
    )


def _task_kwargs(architecture: str, raw: dict[str, Any], path: str) -> dict[str, Any]:
    dropout = raw.get("classifier_dropout_prob")
    dropout = {} if dropout is None else {"dropout": dropout}
    if architecture in ("AlbertModel", "AlbertForPreTraining", "AlbertForQuestionAnswering"):
        return {}
    if architecture == "AlbertForMultipleChoice":
        return dropout
    num_labels = len(raw["id2label"]) if "id2label" in raw else raw.get("num_labels", 2)
    if architecture == "AlbertForTokenClassification":
        return {"num_labels": num_labels, **dropout}
    problem = raw.get("problem_type")
    if problem is None:  # HF's rule when the config does not say
        problem = "regression" if num_labels == 1 else "single_label_classification"
    if problem not in _PROBLEM_TYPES:
        raise ValueError(f"{path}: unknown problem_type {problem!r}; expected {sorted(_PROBLEM_TYPES)}")
    return {"num_labels": num_labels, "problem_type": _PROBLEM_TYPES[problem], **dropout}


def label_names(directory: str) -> list[str] | None:
    """The class names in an HF checkpoint's `id2label`, in id order (None if it has none)."""
    _, raw = read_hf_config(directory)
    if "id2label" not in raw:
        return None
    return [raw["id2label"][str(i)] for i in range(len(raw["id2label"]))]


def load_hf_model(directory: str, task: str | None = None) -> keras.Model:
    """Builds the model an HF checkpoint folder holds and loads every weight, checked by name and shape.

    `task` is None (the architecture its config.json names), "backbone" (an `AlbertBackbone` from
    any ALBERT checkpoint, heads left out) or an HF architecture name.
    """
    config, raw = read_hf_config(directory)
    named = (raw.get("architectures") or ["AlbertModel"])[0]
    architecture = "AlbertModel" if task == "backbone" else task or named
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{directory}: no support for {architecture!r}; use {sorted(ARCHITECTURES)}")
    cls, _ = ARCHITECTURES[architecture]
    backbone = AlbertBackbone(config)
    kwargs = _task_kwargs(architecture, raw, os.path.join(directory, CONFIG_FILE))
    model = backbone if cls is AlbertBackbone else cls(backbone, **kwargs)
    load_hf_weights(model, read_hf_state(directory))
    return model


def hf_config_dict(model: keras.Model, label_names: list[str] | None = None) -> dict[str, Any]:
    """The `config.json` contents that transformers needs to rebuild `model`."""
    architecture = architecture_of(model)
    backbone = model if isinstance(model, AlbertBackbone) else model.backbone
    fields = backbone.config.to_dict()
    if fields.pop("sharing") != "all":
        raise ValueError("HF ALBERT shares all sub-layers by group; only sharing='all' exports")
    raw: dict[str, Any] = {"architectures": [architecture], "model_type": "albert"}
    raw.update(**fields, **_ALBERT_TOKENS)
    task = getattr(model, "task_config", {})
    if "dropout" in task:
        raw["classifier_dropout_prob"] = task["dropout"]
    if "num_labels" in task:
        names = label_names or [f"LABEL_{i}" for i in range(task["num_labels"])]
        if len(names) != task["num_labels"]:
            raise ValueError(f"label_names has {len(names)} names for num_labels={task['num_labels']}")
        raw["id2label"] = {str(i): name for i, name in enumerate(names)}
        raw["label2id"] = {name: i for i, name in enumerate(names)}
    if "problem_type" in task:
        raw["problem_type"] = {v: k for k, v in _PROBLEM_TYPES.items()}[task["problem_type"]]
    return raw


def save_hf_model(model: keras.Model, directory: str, label_names: list[str] | None = None) -> None:
    """Writes `model` as an HF checkpoint folder (config.json + model.safetensors), float32."""
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    state = {name: np.ascontiguousarray(value) for name, value in hf_state(model).items()}
    save_file(state, os.path.join(directory, SAFETENSORS_FILE), metadata={"format": "pt"})
    with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(hf_config_dict(model, label_names), f, indent=2, sort_keys=True)
        f.write("\n")
