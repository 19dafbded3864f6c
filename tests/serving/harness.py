"""Helpers for the model server tests: the fake models' labels and notes, a started server with its
stubs, and request builders (requests as a client written against the stock stubs sends them)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.batching import BatchingParameters
from serving.model_server import ModelServer
from serving.models_config import ModelEntry
from serving.requests import Limits

MODEL = "clinical_albert"
V1_LABELS = ["cardiology", "neurology", "orthopedic"]
V2_LABELS = ["v2-cardiology", "v2-neurology", "v2-orthopedic"]
NOTES = [
    "Chief complaint: cough for three days, no fever.",
    "Follow-up after right knee arthroscopy; wound healing well.",
    "Headache with photophobia. Neurologic exam normal.",
]
State = get_model_status_pb2.ModelVersionStatus.State
LIMITS = Limits(max_batch_size=8, max_note_chars=500, max_message_bytes=1 << 20)


@contextlib.contextmanager
def running(
    models: list[ModelEntry],
    poll_seconds: float = 0.0,
    limits: Limits = LIMITS,
    batching: BatchingParameters | None = None,
    **options,
):
    """A started server with its two stubs; always stopped and its channel closed. `options` go to
    ModelServer as they are."""
    server = ModelServer(
        models, port=0, poll_seconds=poll_seconds, limits=limits, batching=batching, **options
    )
    channel = None
    try:
        port = server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        yield (
            server,
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )
    finally:
        if channel is not None:
            channel.close()
        server.stop(grace_seconds=1.0)


def classify_request(notes) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    for note in notes:
        example = request.input.example_list.examples.add()
        example.features.feature["text"].bytes_list.value.append(note.encode())
    return request


def predict_request(notes, model: str = MODEL, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(notes, dtype=tf.string))
    return request


def in_process(export: Path, notes: list[str]) -> dict[str, np.ndarray]:
    outputs = tf.saved_model.load(str(export)).signatures["serving_default"](text=tf.constant(notes))
    return {key: value.numpy() for key, value in outputs.items()}


def status_of(model_stub, version: int | None = None) -> dict[int, tuple[int, int, str]]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    if version is not None:
        request.model_spec.version.value = version
    response = model_stub.GetModelStatus(request, timeout=10)
    return {
        s.version: (s.state, s.status.error_code, s.status.error_message)
        for s in response.model_version_status
    }


def config_text(*models: tuple[str, Path, str]) -> str:
    """A ModelServerConfig text proto serving each (name, base path, version policy text)."""
    configs = " ".join(
        f'config {{ name: "{name}" base_path: "{base}" {policy} }}' for name, base, policy in models
    )
    return f"model_config_list {{ {configs} }}"


def reload_config(model_stub, text: str) -> model_management_pb2.ReloadConfigResponse:
    """ModelService/HandleReloadConfigRequest with the config in `text`."""
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return model_stub.HandleReloadConfigRequest(request, timeout=30)
