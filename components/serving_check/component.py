"""`ServingCheck`: a model in, an InfraBlessing out (TFX's InfraValidator needs a model server in
Docker or Kubernetes; this checks what that would, in a fresh Python process)."""

from __future__ import annotations

from typing import ClassVar

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.serving_check import executor


class ServingCheckSpec(types.ComponentSpec):
    PARAMETERS: ClassVar[dict[str, ExecutionParameter]] = {executor.TIMEOUT_KEY: ExecutionParameter(type=int)}
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)
    }
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing)
    }


class ServingCheck(base_component.BaseComponent):
    SPEC_CLASS = ServingCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, timeout_seconds: int = 600):
        super().__init__(
            spec=ServingCheckSpec(
                model=model,
                timeout_seconds=timeout_seconds,
                blessing=types.Channel(type=standard_artifacts.InfraBlessing),
            )
        )
