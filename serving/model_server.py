"""A local model server that speaks TF Serving's gRPC protocol, for tests and laptops.

    python -m serving.model_server --port 8500 --model_name clinical_albert \\
        --model_base_path runs/local/serving
    python -m serving.model_server --port 8500 --model_config_file models.config \\
        --enable_batching --batching_parameters_file batching_parameters.txt

It answers `PredictionService` (Predict, Classify, GetModelMetadata) and `ModelService.GetModelStatus`
for the SavedModels the Pusher writes as `<base_path>/<integer version>/`, so a client written against
it works unchanged against the stock TF Serving binary. Like TF Serving it polls each base path, loads
a new version and replays its warmup requests before serving it, unloads the old one only once a
wanted version is available, and keeps serving a good version when a newer one fails to load (the
failure shows in GetModelStatus). Requests are validated before they reach the graph; neither
requests nor note text are ever logged or echoed in errors, which name the input and item only.
The standard gRPC health service (`grpc.health.v1.Health`) reports SERVING for each model name that
has a version available, and for "" (the whole server) when every model has one.
With `--enable_batching`, concurrent calls to one signature are merged into one model call
(`serving.batching`). `ModelService.HandleReloadConfigRequest` replaces the served model set with the
request's `ModelServerConfig`, keeping the loaded versions of models whose base path is unchanged.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.batching import (
    BatchingParameters,
    BatchScheduler,
    BatchTooLarge,
    QueueFull,
    load_batching_parameters,
)
from serving.models_config import ModelEntry, VersionPolicy, load_models_config, models_from_config
from serving.op_allowlist import read_saved_model

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
State = get_model_status_pb2.ModelVersionStatus.State


@dataclass(frozen=True)
class Limits:
    """What a request may hold. `text_inputs` names the inputs (and tf.Example features) that carry
    note text: those must be valid UTF-8 and at most `max_note_chars` characters."""

    max_batch_size: int = 64
    max_note_chars: int = 100_000
    max_message_bytes: int = 16 * 1024 * 1024
    text_inputs: frozenset[str] = frozenset({"text"})


class RequestError(Exception):
    """A request the server refuses: the gRPC code and a message naming the problem (never data)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _check_text(values: list[bytes], where: str, limits: Limits) -> None:
    for index, value in enumerate(values):
        try:
            chars = len(value.decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"{where} item {index}: invalid UTF-8"
            ) from None
        if chars > limits.max_note_chars:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{where} item {index}: {chars} characters, more than the limit {limits.max_note_chars}",
            )


def _check_batch(size: int, where: str, limits: Limits) -> None:
    if size == 0:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: empty batch")
    if size > limits.max_batch_size:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{where}: batch of {size}, more than the limit {limits.max_batch_size}",
        )


class ServableVersion:
    """One loaded SavedModel version: its signatures as callables and as SignatureDef protos. With a
    `batcher`, calls to signatures whose inputs and outputs are batched along axis 0 go through it."""

    def __init__(self, version: int, path: str, batcher: BatchScheduler | None = None):
        import tensorflow_text  # noqa: F401  (registers the SentencePiece ops before loading)

        self.version = version
        self.path = path
        self.batcher = batcher
        meta_graph = read_saved_model(path).meta_graphs[0]
        self.signature_defs = {name: meta_graph.signature_def[name] for name in meta_graph.signature_def}
        self._loaded = tf.saved_model.load(path)
        self._functions = dict(self._loaded.signatures)
        batchable = {name: _batched_outputs(sig) for name, sig in self.signature_defs.items()}
        self._batched_outputs = {name: outputs for name, outputs in batchable.items() if outputs is not None}

    def signature(self, name: str) -> meta_graph_pb2.SignatureDef:
        """The SignatureDef called `name` (default serving_default) that the model can run."""
        name = name or DEFAULT_SIGNATURE
        if name not in self._functions or name not in self.signature_defs:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown signature {name!r}")
        return self.signature_defs[name]

    def run(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs signature `name` on already validated inputs, merged with concurrent calls when batching."""
        name = name or DEFAULT_SIGNATURE
        sizes = {value.shape[0] if value.ndim else None for value in inputs.values()}
        if self.batcher is None or name not in self._batched_outputs or len(sizes) != 1 or None in sizes:
            return self.call_signature(name, inputs)
        key = (id(self), name, tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items())))
        try:
            return self.batcher.submit(
                key, inputs, partial(self.call_signature, name), self._batched_outputs[name]
            )
        except BatchTooLarge as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        except QueueFull as error:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, str(error)) from None

    def call_signature(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of signature `name` (the unit that batching merges requests into)."""
        try:
            outputs = self._functions[name](**{key: tf.constant(value) for key, value in inputs.items()})
        except tf.errors.InvalidArgumentError:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"signature {name!r} rejected the inputs"
            ) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def predict(self, request: predict_pb2.PredictRequest, limits: Limits) -> predict_pb2.PredictResponse:
        """A Predict request answered by this version (inputs checked against the SignatureDef)."""
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signature(name)
        missing = sorted(set(signature.inputs) - set(request.inputs))
        if missing:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"missing input(s) {missing} for {name!r}")
        extra = sorted(set(request.inputs) - set(signature.inputs))
        if extra:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown input(s) {extra} for {name!r}")
        inputs = {
            key: self._input(key, request.inputs[key], spec, limits) for key, spec in signature.inputs.items()
        }
        wanted = list(request.output_filter) or sorted(signature.outputs)
        unknown = sorted(set(wanted) - set(signature.outputs))
        if unknown:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"output_filter names unknown output(s) {unknown}"
            )
        outputs = self.run(name, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.signature_name = name
        response.model_spec.version.value = self.version
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    @staticmethod
    def _input(key: str, proto, spec, limits: Limits) -> np.ndarray:
        where = f"input {key!r}"
        if proto.dtype != spec.dtype:
            expected, got = types_pb2.DataType.Name(spec.dtype), types_pb2.DataType.Name(proto.dtype)
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: expected {expected}, got {got}")
        try:
            value = tf.make_ndarray(proto)
        except Exception:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"{where}: malformed TensorProto") from None
        shape = spec.tensor_shape
        if not shape.unknown_rank and len(shape.dim) != value.ndim:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"{where}: expected rank {len(shape.dim)}, got {value.ndim}"
            )
        if value.ndim >= 1:
            _check_batch(value.shape[0], where, limits)
        if key in limits.text_inputs and proto.dtype == types_pb2.DT_STRING:
            _check_text(list(value.reshape(-1)), where, limits)
        return value

    def classify(
        self, request: classification_pb2.ClassificationRequest, limits: Limits
    ) -> classification_pb2.ClassificationResponse:
        """A Classify request answered by a signature marked with TF Serving's Classify method name."""
        name = request.model_spec.signature_name or self._classify_signature()
        signature = self.signature(name)
        if signature.method_name != tf.saved_model.CLASSIFY_METHOD_NAME:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"signature {name!r} is not a Classify signature"
            )
        kind = request.input.WhichOneof("kind")
        if kind is None:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "Classify input holds no examples")
        examples = list(getattr(request.input, kind).examples)
        _check_batch(len(examples), "Classify input", limits)
        serialized = []
        for index, example in enumerate(examples):
            if kind == "example_list_with_context":
                merged = type(example)()
                merged.CopyFrom(request.input.example_list_with_context.context)
                merged.MergeFrom(example)
                example = merged
            for key in limits.text_inputs & set(example.features.feature):
                _check_text(
                    list(example.features.feature[key].bytes_list.value), f"example {index} {key!r}", limits
                )
            serialized.append(example.SerializeToString())
        (key,) = signature.inputs
        outputs = self.run(name, {key: np.array(serialized, dtype=object)})
        scores, classes = outputs.get("scores"), outputs.get("classes")
        response = classification_pb2.ClassificationResponse()
        response.model_spec.signature_name = name
        response.model_spec.version.value = self.version
        for row in range(len(serialized)):
            classification = response.result.classifications.add()
            width = (scores if scores is not None else classes).shape[1]
            for column in range(width):
                entry = classification.classes.add()
                if classes is not None:
                    entry.label = classes[row, column].decode("utf-8")
                if scores is not None:
                    entry.score = float(scores[row, column])
        return response

    def _classify_signature(self) -> str:
        marked = sorted(
            name
            for name, signature in self.signature_defs.items()
            if signature.method_name == tf.saved_model.CLASSIFY_METHOD_NAME and name in self._functions
        )
        if not marked:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "the model has no Classify signature")
        return DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in marked else marked[0]

    def warm_up(self, limits: Limits) -> int:
        """Replays `assets.extra/tf_serving_warmup_requests` (Predict requests); returns how many."""
        from tensorflow_serving.apis import prediction_log_pb2

        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.isfile(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if entry.HasField("predict_log"):
                self.predict(entry.predict_log.request, limits)
                count += 1
        return count


def _batched_outputs(signature: meta_graph_pb2.SignatureDef) -> frozenset[str] | None:
    """The outputs split per caller when batching (first dimension unknown), or None when the signature
    cannot be batched: an input without a leading batch dimension, or an output of unknown rank."""
    for spec in signature.inputs.values():
        shape = spec.tensor_shape
        if shape.unknown_rank or not shape.dim or shape.dim[0].size != -1:
            return None
    if not signature.inputs or any(spec.tensor_shape.unknown_rank for spec in signature.outputs.values()):
        return None
    return frozenset(
        name
        for name, spec in signature.outputs.items()
        if spec.tensor_shape.dim and spec.tensor_shape.dim[0].size == -1
    )


def _version_folders(base_path: str) -> dict[int, Path]:
    """`<base_path>/<integer>/` folders holding a saved_model.pb(txt); others (temp names) are skipped."""
    base = Path(base_path)
    if not base.is_dir():
        return {}
    found = {}
    for child in base.iterdir():
        has_graph = (child / "saved_model.pb").is_file() or (child / "saved_model.pbtxt").is_file()
        if child.name.isdigit() and has_graph:
            found[int(child.name)] = child
    return found


def _stamp(folder: Path) -> tuple:
    """Changes when the version's graph file is rewritten, so a failed version is retried then."""
    graph = folder / "saved_model.pb"
    if not graph.is_file():
        graph = folder / "saved_model.pbtxt"
    stat = graph.stat()
    return (stat.st_mtime_ns, stat.st_size)


class ModelVersions:
    """The versions of one model: which are on disk, loading, served or failed, and their states."""

    def __init__(self, entry: ModelEntry, limits: Limits, batcher: BatchScheduler | None = None):
        self.entry = entry
        self.limits = limits
        self.batcher = batcher
        self._lock = threading.Lock()
        self._served: dict[int, ServableVersion] = {}
        self._states: dict[int, tuple[int, str]] = {}  # version -> (State, error message or "")
        self._failed: dict[int, tuple] = {}  # version -> stamp of the graph that failed

    def _set(self, version: int, state: int, error: str = "") -> None:
        with self._lock:
            self._states[version] = (state, error)

    def poll(self) -> None:
        """Loads the wanted versions not yet served, then unloads unwanted ones, never leaving the model
        with nothing to serve because a newer version failed (or because every folder disappeared)."""
        on_disk = _version_folders(self.entry.base_path)
        wanted = self.entry.policy.select(list(on_disk))
        for version in wanted:
            folder = on_disk[version]
            if version in self._served:
                continue
            try:
                stamp = _stamp(folder)
            except OSError:
                continue  # disappeared while scanning; the next poll sees what is there
            if self._failed.get(version) == stamp:
                continue
            self._load(version, folder, stamp)
        if self.entry.policy.kind == "latest" and not self._served:
            self._load_fallback(on_disk, wanted)
        with self._lock:
            keep = [version for version in wanted if version in self._served]
            retire = [version for version in self._served if version not in wanted] if keep else []
            for version in retire:
                self._states[version] = (State.UNLOADING, "")
                del self._served[version]
                self._states[version] = (State.END, "")
                log.info("model %s: version %d unloaded", self.entry.name, version)

    def _load_fallback(self, on_disk: dict[int, Path], wanted: list[int]) -> None:
        """With nothing served and the latest versions failing, serves the newest older one that loads,
        so a bad newest export at start-up does not leave the model unavailable."""
        for version in sorted(set(on_disk) - set(wanted), reverse=True):
            try:
                stamp = _stamp(on_disk[version])
            except OSError:
                continue
            if self._failed.get(version) != stamp and self._load(version, on_disk[version], stamp):
                return

    def _load(self, version: int, folder: Path, stamp: tuple) -> bool:
        self._set(version, State.START)
        self._set(version, State.LOADING)
        started = time.monotonic()
        try:
            servable = ServableVersion(version, str(folder), self.batcher)
            warmed = servable.warm_up(self.limits)
        except Exception as error:  # a bad export must not stop the server or the other versions
            message = f"failed to load version {version}: {type(error).__name__}: {error}"[:1000]
            self._failed[version] = stamp
            self._set(version, State.END, message)
            log.warning("model %s: %s", self.entry.name, message)
            return False
        with self._lock:
            self._served[version] = servable
            self._states[version] = (State.AVAILABLE, "")
        self._failed.pop(version, None)
        log.info(
            "model %s: version %d available (%d warmup requests, %.1f s)",
            self.entry.name,
            version,
            warmed,
            time.monotonic() - started,
        )
        return True

    def get(self, version: int | None) -> ServableVersion:
        """The served version asked for, or the newest served one."""
        with self._lock:
            if version is None:
                if not self._served:
                    raise RequestError(
                        grpc.StatusCode.UNAVAILABLE, f"model {self.entry.name!r}: no version available"
                    )
                return self._served[max(self._served)]
            if version not in self._served:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND, f"model {self.entry.name!r}: version {version} is not served"
                )
            return self._served[version]

    def status(self, version: int | None) -> list[tuple[int, int, str]]:
        """(version, State, error message) per known version, newest first."""
        with self._lock:
            states = dict(self._states)
        if version is not None:
            if version not in states:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND, f"model {self.entry.name!r}: version {version} is unknown"
                )
            states = {version: states[version]}
        return [(v, *states[v]) for v in sorted(states, reverse=True)]


def _abort_on_error(method):
    """Turns RequestError into its status; anything else into INTERNAL naming only the error type."""

    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except RequestError as error:
            context.abort(error.code, error.message)
        except Exception as error:
            log.error("%s failed: %s", method.__name__, type(error).__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})")

    wrapper.__name__ = method.__name__
    return wrapper


class _Handlers(
    prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer
):
    """The gRPC methods, resolving each request's model spec against the served models."""

    def __init__(
        self,
        models: dict[str, ModelVersions],
        limits: Limits,
        reload: Callable[[list[ModelEntry]], None],
    ):
        self.models = models
        self.limits = limits
        self._reload = reload

    def _model(self, spec) -> ModelVersions:
        if spec.name not in self.models:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"model {spec.name!r} is not served")
        if spec.version_label:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "version labels are not supported")
        return self.models[spec.name]

    def _version(self, spec) -> ServableVersion:
        return self._model(spec).get(spec.version.value if spec.HasField("version") else None)

    @_abort_on_error
    def Predict(self, request, context):
        response = self._version(request.model_spec).predict(request, self.limits)
        response.model_spec.name = request.model_spec.name
        return response

    @_abort_on_error
    def Classify(self, request, context):
        response = self._version(request.model_spec).classify(request, self.limits)
        response.model_spec.name = request.model_spec.name
        return response

    @_abort_on_error
    def GetModelMetadata(self, request, context):
        if list(request.metadata_field) != ["signature_def"]:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "metadata_field must be ['signature_def']")
        servable = self._version(request.model_spec)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in servable.signature_defs.items():
            signatures.signature_def[name].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signatures)
        return response

    @_abort_on_error
    def GetModelStatus(self, request, context):
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state, error in self._model(spec).status(version):
            entry = response.model_version_status.add(version=number, state=state)
            if error:
                entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                entry.status.error_message = error
        return response

    @_abort_on_error
    def HandleReloadConfigRequest(self, request, context):
        try:
            entries = models_from_config(request.config, origin="ReloadConfigRequest")
        except ValueError as error:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        self._reload(entries)
        return model_management_pb2.ReloadConfigResponse()


class ModelServer:
    """The gRPC server, its models and the poller that loads new versions. Bind with `start()`, which
    loads what is on disk first (as TF Serving does) and returns the bound port. `batching` turns on
    server-side batching with those parameters."""

    def __init__(
        self,
        models: list[ModelEntry],
        port: int = 8500,
        host: str = "127.0.0.1",
        poll_seconds: float = 1.0,
        limits: Limits = Limits(),
        workers: int = 8,
        batching: BatchingParameters | None = None,
    ):
        self.limits = limits
        self.batcher = BatchScheduler(batching) if batching is not None else None
        self.models = {entry.name: ModelVersions(entry, limits, self.batcher) for entry in models}
        self.poll_seconds = poll_seconds
        self._poll_lock = threading.Lock()
        self.address = f"{host}:{port}"
        self.port = 0
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        options = [
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
        ]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
        self._handlers = _Handlers(self.models, limits, self.reload)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self._handlers, self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self._handlers, self._server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)

    def poll_once(self) -> None:
        """Brings every model's served versions in line with its base path, then reports health."""
        with self._poll_lock:
            for model in self.models.values():
                model.poll()
            self._report_health()

    def reload(self, entries: list[ModelEntry]) -> None:
        """Serves exactly `entries` from now on: a model whose base path is unchanged keeps its loaded
        versions (a new version policy applies at once), new ones load before this returns, and removed
        ones stop being served (calls already running finish)."""
        with self._poll_lock:
            previous = self.models
            models = {}
            for entry in entries:
                model = previous.get(entry.name)
                if model is not None and model.entry.base_path == entry.base_path:
                    model.entry = entry
                else:
                    model = ModelVersions(entry, self.limits, self.batcher)
                models[entry.name] = model
            for model in models.values():
                model.poll()
            self.models = models
            self._handlers.models = models
            for name in set(previous) - set(models):
                self.health.set(name, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            self._report_health()
        log.info("config reloaded: serving %s", sorted(models))

    def _report_health(self) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        available = {}
        for name, model in self.models.items():
            try:
                model.get(None)
                available[name] = True
            except RequestError:
                available[name] = False
            self.health.set(name, serving if available[name] else not_serving)
        self.health.set("", serving if all(available.values()) else not_serving)

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception as error:  # the poller must outlive a bad scan
                log.error("version poll failed: %s", type(error).__name__)

    def start(self) -> int:
        if self.batcher is not None:
            self.batcher.start()
        self.poll_once()
        self.port = self._server.add_insecure_port(self.address)
        if not self.port:
            raise OSError(f"could not bind {self.address}")
        self._server.start()
        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
            self._poller.start()
        log.info("serving %s on port %d", sorted(self.models), self.port)
        return self.port

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stops accepting requests, lets in-flight ones finish within the grace period, stops polling."""
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        self._server.stop(grace_seconds).wait()
        if self._poller is not None:
            self._poller.join()
        if self.batcher is not None:
            self.batcher.stop()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.model_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--model_name", help="the model's name in requests (with --model_base_path)")
    parser.add_argument("--model_base_path", help="folder of <integer version>/ SavedModels")
    parser.add_argument("--model_config_file", help="a models.config (ModelServerConfig text proto)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    parser.add_argument("--max_batch_size", type=int, default=Limits.max_batch_size)
    parser.add_argument("--max_note_chars", type=int, default=Limits.max_note_chars)
    parser.add_argument("--max_message_bytes", type=int, default=Limits.max_message_bytes)
    parser.add_argument(
        "--enable_batching",
        nargs="?",
        const=True,
        default=False,
        type=_flag,
        help="merge concurrent calls into batches (also --enable_batching=true|false)",
    )
    parser.add_argument("--batching_parameters_file", help="a BatchingParameters text proto")
    parser.add_argument("--grace_seconds", type=float, default=5.0, help="shutdown grace for in-flight calls")
    args = parser.parse_args(argv)
    if bool(args.model_config_file) == bool(args.model_base_path):
        parser.error("give either --model_config_file or --model_name with --model_base_path")
    if args.model_base_path and not args.model_name:
        parser.error("--model_base_path needs --model_name")
    if args.batching_parameters_file and not args.enable_batching:
        parser.error("--batching_parameters_file needs --enable_batching")
    return args


def _flag(value: str) -> bool:
    """A boolean flag value written as TF Serving accepts it (true/false, 1/0)."""
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return lowered in ("true", "1")


def main(argv: list[str] | None = None) -> int:
    """Serves until SIGINT or SIGTERM, then shuts down gracefully."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _arguments(argv)
    if args.model_config_file:
        models = load_models_config(args.model_config_file)
    else:
        models = [ModelEntry(args.model_name, args.model_base_path, VersionPolicy())]
    limits = Limits(args.max_batch_size, args.max_note_chars, args.max_message_bytes)
    batching = None
    if args.enable_batching:
        batching = (
            load_batching_parameters(args.batching_parameters_file)
            if args.batching_parameters_file
            else BatchingParameters()
        )
    server = ModelServer(
        models, args.port, args.host, args.file_system_poll_wait_seconds, limits, batching=batching
    )
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    server.start()
    done.wait()
    server.stop(args.grace_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
