"""`Pusher`: TFX's Pusher component with the executor that does not push a served model twice."""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components.pusher import executor


class Pusher(tfx.components.Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
