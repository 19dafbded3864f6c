"""`Pusher`: TFX's Pusher component with the executor that does not push a served model twice, and an
optional `model_card` input that it copies beside the model it pushes."""

from __future__ import annotations

from typing import ClassVar

from tfx import types
from tfx import v1 as tfx
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter

from components.model_card.component import ModelCardArtifact
from components.pusher import executor


class PusherSpec(standard_component_specs.PusherSpec):
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {
        **standard_component_specs.PusherSpec.INPUTS,
        executor.MODEL_CARD_KEY: ChannelParameter(type=ModelCardArtifact, optional=True),
    }


class Pusher(tfx.components.Pusher):
    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        push_destination: pusher_pb2.PushDestination,
        model_blessing: types.BaseChannel | None = None,
        infra_blessing: types.BaseChannel | None = None,
        model_card: types.BaseChannel | None = None,
    ):
        """As TFX's Pusher (a filesystem destination), plus `model_card`: the card pushed with the model."""
        spec = PusherSpec(
            model=model,
            model_blessing=model_blessing,
            infra_blessing=infra_blessing,
            model_card=model_card,
            push_destination=push_destination,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        )
        # TFX's Pusher.__init__ builds its own spec, without the card: the base constructor takes ours.
        base_component.BaseComponent.__init__(self, spec=spec)
