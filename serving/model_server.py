"""A local model server that speaks TF Serving's gRPC protocol, for tests and laptops.

    python -m serving.model_server --port 8500 --model_name clinical_albert \\
        --model_base_path runs/local/serving
    python -m serving.model_server --port 8500 --model_config_file models.config \\
        --enable_batching --batching_parameters_file batching_parameters.txt \\
        --ssl_config_file ssl.config

It answers `PredictionService` (Predict, Classify, GetModelMetadata) and `ModelService.GetModelStatus`
for the SavedModels the Pusher writes as `<base_path>/<integer version>/`, so a client written against
it works unchanged against the stock TF Serving binary. The parts, where a reader would look for them:
    serving.requests    request decoding and validation (limits checked before anything is built)
    serving.servable    one loaded version: op allowlist, client signatures, Predict and Classify
    serving.versions    polling, loading, warmup, retries of failed loads, unloading
    serving.services    the gRPC methods
    serving.batching    `--enable_batching`, with TF Serving's rule that every output is batched
    serving.tls         `--ssl_config_file`: TLS and mutual TLS
This module binds them into a server and holds the command line. The server binds loopback unless
told otherwise; `ModelService.HandleReloadConfigRequest` is refused unless `--enable_reload_config`,
and a reload applies whole or not at all: a config naming a model that fails to load changes nothing.
The standard gRPC health service (`grpc.health.v1.Health`) reports SERVING for each model name that
has a version available, and for "" (the whole server) when every model has one. Neither requests
nor note text are ever logged or echoed in errors.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.batching import BatchingParameters, BatchScheduler, load_batching_parameters
from serving.models_config import ModelEntry, VersionPolicy, load_models_config
from serving.op_allowlist import DEFAULT_ALLOWLIST, load_allowlist
from serving.requests import Limits
from serving.servable import WARMUP_FILE, ServableVersion  # noqa: F401  (re-exported)
from serving.services import Handlers
from serving.tls import TlsConfig, load_ssl_config
from serving.versions import LoadRetry, ModelVersions

log = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits()
DEFAULT_RETRY = LoadRetry()


class ModelServer:
    """The gRPC server, its models and the poller that loads new versions. Bind with `start()`, which
    loads what is on disk first (as TF Serving does) and returns the bound port. `batching` turns on
    server-side batching with those parameters; `retry` sets how failed loads are retried; `allowlist`
    (op names; the committed TF Serving 2.16 list by default) is checked before every load; `tls` serves
    TLS (mutual TLS when it requires client certificates); `allow_reload` enables
    HandleReloadConfigRequest."""

    def __init__(
        self,
        models: list[ModelEntry],
        port: int = 8500,
        host: str = "127.0.0.1",
        poll_seconds: float = 1.0,
        limits: Limits = DEFAULT_LIMITS,
        workers: int = 8,
        batching: BatchingParameters | None = None,
        retry: LoadRetry = DEFAULT_RETRY,
        allowlist: frozenset[str] | None = None,
        tls: TlsConfig | None = None,
        allow_reload: bool = False,
    ):
        self.limits = limits
        self.retry = retry
        self.allowlist = load_allowlist(DEFAULT_ALLOWLIST) if allowlist is None else allowlist
        self.tls = tls
        self.batcher = BatchScheduler(batching) if batching is not None else None
        self.models = {entry.name: self._versions(entry) for entry in models}
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
        self._handlers = Handlers(self.models, limits, self.reload, allow_reload)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self._handlers, self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self._handlers, self._server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)

    def _versions(self, entry: ModelEntry) -> ModelVersions:
        return ModelVersions(entry, self.limits, self.batcher, self.retry, self.allowlist)

    def poll_once(self) -> None:
        """Brings every model's served versions in line with its base path, then reports health."""
        with self._poll_lock:
            for model in self.models.values():
                model.poll()
            self._report_health()

    def reload(self, entries: list[ModelEntry]) -> dict[str, str]:
        """Serves exactly `entries` from now on, or refuses and changes nothing. Models that are new (or
        have a new base path) load first, each through the op allowlist; when any of them failed to load
        and has no version to serve, the config is refused, and what is returned says why for each of
        those (a new model with no version folder yet is accepted and waits for its first push, as in
        stock TF Serving). Otherwise a
        model whose base path is unchanged keeps its loaded versions (a new version policy applies at
        once), and removed models stop being served (calls already running finish)."""
        with self._poll_lock:
            previous = self.models
            fresh = {
                entry.name: self._versions(entry)
                for entry in entries
                if entry.name not in previous or previous[entry.name].entry.base_path != entry.base_path
            }
            for model in fresh.values():
                model.poll()
            refused = {name: why for name, model in fresh.items() if (why := model.load_failure())}
            if refused:
                log.warning("config reload refused: %s could not be loaded", sorted(refused))
                return refused
            models = {}
            for entry in entries:
                model = fresh.get(entry.name)
                if model is None:
                    model = previous[entry.name]
                    model.entry = entry
                    model.poll()
                models[entry.name] = model
            self.models = models
            self._handlers.models = models
            for name in set(previous) - set(models):
                self.health.set(name, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            self._report_health()
        log.info("config reloaded: serving %s", sorted(models))
        return {}

    def _report_health(self) -> None:
        """Sets each model's health, and the whole server's: SERVING while every model has a version."""
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        available = {name: not model.unavailable_reason() for name, model in self.models.items()}
        for name, ok in available.items():
            self.health.set(name, serving if ok else not_serving)
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
        if self.tls is None:
            self.port = self._server.add_insecure_port(self.address)
        else:
            self.port = self._server.add_secure_port(self.address, self.tls.credentials())
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
    parser.add_argument(
        "--max_num_load_retries",
        type=int,
        default=LoadRetry.max_retries,
        help="retries of a failed load while its folder is unchanged (a change retries at once)",
    )
    parser.add_argument(
        "--load_retry_interval_micros",
        type=int,
        default=int(LoadRetry.interval_seconds * 1e6),
        help="wait between those retries",
    )
    parser.add_argument(
        "--ssl_config_file", help="an SSLConfig text proto: serve TLS (mutual TLS with client_verify)"
    )
    parser.add_argument(
        "--enable_reload_config",
        nargs="?",
        const=True,
        default=False,
        type=_flag,
        help="let clients replace the served models through ModelService/HandleReloadConfigRequest",
    )
    parser.add_argument("--max_elements", type=int, default=Limits.max_elements, help="per input tensor")
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


def build_server(args: argparse.Namespace) -> ModelServer:
    """The server the command line describes, not yet started."""
    if args.model_config_file:
        models = load_models_config(args.model_config_file)
    else:
        models = [ModelEntry(args.model_name, args.model_base_path, VersionPolicy())]
    limits = Limits(
        args.max_batch_size, args.max_note_chars, args.max_message_bytes, max_elements=args.max_elements
    )
    batching = None
    if args.enable_batching:
        batching = (
            load_batching_parameters(args.batching_parameters_file)
            if args.batching_parameters_file
            else BatchingParameters()
        )
    return ModelServer(
        models,
        args.port,
        args.host,
        args.file_system_poll_wait_seconds,
        limits,
        batching=batching,
        retry=LoadRetry(args.max_num_load_retries, args.load_retry_interval_micros / 1e6),
        tls=load_ssl_config(args.ssl_config_file) if args.ssl_config_file else None,
        allow_reload=args.enable_reload_config,
    )


def main(argv: list[str] | None = None) -> int:
    """Serves until SIGINT or SIGTERM, then shuts down gracefully."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _arguments(argv)
    server = build_server(args)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    server.start()
    done.wait()
    server.stop(args.grace_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
