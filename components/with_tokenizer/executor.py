"""Executors that hand the tokenizer artifact's folder to the user function through custom_config.

TFX's Transform and Trainer accept no extra input artifacts, and their `custom_config` is fixed when
the pipeline is built, before the tokenizer exists. These executors take the `tokenizer` input,
put its URI into custom_config under `TOKENIZER_DIR_KEY`, and run the stock executor unchanged. The
tokenizer stays a real input: it is in the lineage, and a new tokenizer invalidates the cache.

The Trainer's optional `warm_start_model` input (the last blessed model, which fine-tuning may start
from) travels the same way, as `WARM_START_DIR_KEY`.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.components.transform import executor as transform_executor
from tfx.types import artifact_utils
from tfx.utils import json_utils

TOKENIZER_KEY = "tokenizer"
TOKENIZER_DIR_KEY = "tokenizer_dir"
WARM_START_KEY = "warm_start_model"
WARM_START_DIR_KEY = "warm_start_model_dir"
CUSTOM_CONFIG_KEY = "custom_config"


def with_tokenizer_dir(
    input_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]
) -> tuple[dict[str, list[types.Artifact]], dict[str, Any]]:
    """The stock executor's inputs: `tokenizer` removed, its URI added to custom_config."""
    inputs = dict(input_dict)
    tokenizer_dir = artifact_utils.get_single_uri(inputs.pop(TOKENIZER_KEY))
    config = json_utils.loads(exec_properties.get(CUSTOM_CONFIG_KEY) or "null") or {}
    config[TOKENIZER_DIR_KEY] = tokenizer_dir
    warm_start = inputs.pop(WARM_START_KEY, None)
    if warm_start:
        config[WARM_START_DIR_KEY] = artifact_utils.get_single_uri(warm_start)
    return inputs, {**exec_properties, CUSTOM_CONFIG_KEY: json_utils.dumps(config)}


class TransformExecutor(transform_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        inputs, properties = with_tokenizer_dir(input_dict, exec_properties)
        super().Do(inputs, output_dict, properties)


class TrainerExecutor(trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        inputs, properties = with_tokenizer_dir(input_dict, exec_properties)
        super().Do(inputs, output_dict, properties)
