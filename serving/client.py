"""A gRPC client for the clinical ALBERT model on TF Serving (or the local protocol-compatible server).

Talks the TF Serving protocol through the stubs in `tensorflow_serving.apis`:
    predict     PredictionService/Predict on `serving_default` (text -> probabilities, label_names)
    labels      the same call on a multi-label model: text -> the labels predicted (each label's
                probability at or above the threshold chosen for it in training)
    entities    the same call on a token-classification model: text -> its entities, each with
                character offsets into the string sent (`Entity`)
    classify    PredictionService/Classify on `classify` (serialized tf.Examples with a `text` feature)
    metadata    PredictionService/GetModelMetadata (signature names, their inputs and outputs)
    status      ModelService/GetModelStatus (versions and their states)

Every call carries a deadline (`timeout` seconds per attempt). A call that fails with UNAVAILABLE (the
server is starting, restarting, or the connection dropped) is retried with exponential backoff; all
four calls are reads, so a repeat cannot change anything on the server. DEADLINE_EXCEEDED is retried
only for metadata and status, which are cheap: an inference that ran out of time usually means an
overloaded server, and repeating it would add load. Every other code fails at once.

Note text never reaches a log or an error message: errors carry the gRPC code, the server's message
and the note's index. The CLI prints note indices, never note text:

    python -m serving.client predict --target localhost:8500 --model clinical_albert --top 5 NOTE_FILE...
    python -m serving.client predict --text "..." --text "..."
    python -m serving.client entities --model ncbi_disease NOTE_FILE...
    python -m serving.client status
    python -m serving.client metadata
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

DEFAULT_TARGET = "localhost:8500"
DEFAULT_MODEL = "clinical_albert"
PREDICT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classify"
TEXT_INPUT = "text"
TEXT_B_INPUT = "text_b"
PROBABILITIES = "probabilities"
LABEL_NAMES = "label_names"
PREDICTED = "predicted"
#: A token-classification model's entity outputs (`components/trainer/finetune.py`): each
#: [batch, max entities], padded past `num_entities` [batch].
ENTITY_OUTPUTS = ("num_entities", "entity_starts", "entity_ends", "entity_types", "entity_scores")

_ALWAYS_RETRY = frozenset({grpc.StatusCode.UNAVAILABLE})
_READ_RETRY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_T = TypeVar("_T")


class ServingError(RuntimeError):
    """A failed call to the model server: the RPC, the gRPC status code and the server's message."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str, attempts: int = 1):
        self.method = method
        self.code = code
        self.details = details
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{method} failed{tries}: {code.name}: {details}")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: dtype name (e.g. DT_STRING) and shape (-1 = any size)."""

    dtype: str
    shape: tuple[int, ...] | None


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    """A served signature: its method name (predict/classify/...), inputs and outputs by name."""

    method_name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One model version as the server reports it: state name (LOADING, AVAILABLE, ...) and error."""

    version: int
    state: str
    error_code: int
    error_message: str


@dataclasses.dataclass(frozen=True)
class Entity:
    """One entity the model found: `text[start:end]` of the string sent (Python `str` indices, that is
    Unicode code points), its type, and the mean probability of its words' labels."""

    start: int
    end: int
    type: str
    score: float


def text_example(text: str) -> tf.train.Example:
    """A tf.Example with the note as its `text` bytes feature, the layout the `classify` signature parses."""
    example = tf.train.Example()
    example.features.feature[TEXT_INPUT].bytes_list.value.append(text.encode("utf-8"))
    return example


class ServingClient:
    """A client for one model on one server. Use as a context manager, or call `close()`.

    `version` pins a model version (else the server's latest); `timeout` is each attempt's deadline in
    seconds; `retries` is how many times a retryable failure is repeated (so at most retries + 1
    attempts), waiting `backoff` seconds, then twice that, and so on, up to `max_backoff`.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        model_name: str = DEFAULT_MODEL,
        version: int | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        tls: bool = False,
        root_certificates: bytes | None = None,
        client_certificate: bytes | None = None,
        client_key: bytes | None = None,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if (root_certificates, client_certificate, client_key) != (None, None, None) and not tls:
            raise ValueError("certificates were given but tls is off")
        if (client_certificate is None) != (client_key is None):
            raise ValueError("mutual TLS needs both client_certificate and client_key")
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        if tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=client_key,
                certificate_chain=client_certificate,
            )
            self._channel = grpc.secure_channel(target, credentials)
        else:
            self._channel = grpc.insecure_channel(target)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def model_spec(self, signature_name: str = "") -> model_pb2.ModelSpec:
        """The ModelSpec every request carries: model name, pinned version if any, signature."""
        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=signature_name)
        if self.version is not None:
            spec.version.value = self.version
        return spec

    def predict(self, notes: Sequence[str], passages: Sequence[str] | None = None) -> list[dict[str, float]]:
        """Class probabilities per note, from `serving_default`: one {label: probability} per note.
        A text-pair model takes a second text per note (`passages`: a question's passage, say)."""
        if isinstance(notes, str) or isinstance(passages, str):
            raise TypeError("predict takes lists of notes and passages, not one string")
        if passages is not None and len(passages) != len(notes):
            raise ValueError(f"{len(notes)} notes but {len(passages)} passages: one passage per note")
        request = predict_pb2.PredictRequest(model_spec=self.model_spec(PREDICT_SIGNATURE))
        request.inputs[TEXT_INPUT].CopyFrom(tf.make_tensor_proto(list(notes), dtype=tf.string))
        if passages is not None:
            request.inputs[TEXT_B_INPUT].CopyFrom(tf.make_tensor_proto(list(passages), dtype=tf.string))
        request.output_filter.extend([PROBABILITIES, LABEL_NAMES])
        response = self._call("Predict", self._predictions.Predict, request, _ALWAYS_RETRY)
        return _parse_predict(response, len(notes))

    def labels(self, notes: Sequence[str]) -> list[list[str]]:
        """The labels a multi-label model predicts for each note (output `predicted`), in label order."""
        if isinstance(notes, str):
            raise TypeError("labels takes a list of notes, not one string")
        request = predict_pb2.PredictRequest(model_spec=self.model_spec(PREDICT_SIGNATURE))
        request.inputs[TEXT_INPUT].CopyFrom(tf.make_tensor_proto(list(notes), dtype=tf.string))
        request.output_filter.extend([PREDICTED, LABEL_NAMES])
        response = self._call("Predict", self._predictions.Predict, request, _ALWAYS_RETRY)
        for key in (PREDICTED, LABEL_NAMES):
            if key not in response.outputs:
                raise ServingError("Predict", grpc.StatusCode.INTERNAL, f"reply has no `{key}` output")
        predicted = tf.make_ndarray(response.outputs[PREDICTED])
        names = tf.make_ndarray(response.outputs[LABEL_NAMES])
        names = [name.decode("utf-8") for name in (names[0] if names.ndim == 2 else names).tolist()]
        if predicted.shape != (len(notes), len(names)):
            raise ServingError(
                "Predict",
                grpc.StatusCode.INTERNAL,
                f"predicted has shape {predicted.shape}, expected ({len(notes)}, {len(names)})",
            )
        return [[name for name, on in zip(names, row, strict=True) if on] for row in predicted.tolist()]

    def entities(self, texts: Sequence[str]) -> list[list[Entity]]:
        """The entities of each text, from a token-classification model's `serving_default`, in text
        order; an empty text has none."""
        if isinstance(texts, str):
            raise TypeError("entities takes a list of texts, not one string")
        request = predict_pb2.PredictRequest(model_spec=self.model_spec(PREDICT_SIGNATURE))
        request.inputs[TEXT_INPUT].CopyFrom(tf.make_tensor_proto(list(texts), dtype=tf.string))
        request.output_filter.extend(ENTITY_OUTPUTS)
        response = self._call("Predict", self._predictions.Predict, request, _ALWAYS_RETRY)
        return _parse_entities(response, len(texts))

    def classify(self, examples: Sequence[tf.train.Example] | Sequence[str]) -> list[dict[str, float]]:
        """Class scores per example through the Classify API on the `classify` signature. Strings
        become tf.Examples with a `text` feature; Examples are sent as given."""
        if isinstance(examples, str):
            raise TypeError("classify takes a list of notes or tf.Examples, not one string")
        request = classification_pb2.ClassificationRequest(model_spec=self.model_spec(CLASSIFY_SIGNATURE))
        batch = request.input.example_list.examples
        for item in examples:
            batch.append(text_example(item) if isinstance(item, str) else item)
        response = self._call("Classify", self._predictions.Classify, request, _ALWAYS_RETRY)
        return [
            {entry.label: entry.score for entry in classification.classes}
            for classification in response.result.classifications
        ]

    def metadata(self) -> dict[str, SignatureInfo]:
        """The served version's signatures by name (GetModelMetadata, field `signature_def`)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec(), metadata_field=["signature_def"]
        )
        response = self._call("GetModelMetadata", self._predictions.GetModelMetadata, request, _READ_RETRY)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signature_map):
            raise ServingError("GetModelMetadata", grpc.StatusCode.INTERNAL, "no SignatureDefMap in reply")
        return {
            name: SignatureInfo(
                method_name=signature.method_name,
                inputs={key: _tensor_info(info) for key, info in signature.inputs.items()},
                outputs={key: _tensor_info(info) for key, info in signature.outputs.items()},
            )
            for name, signature in sorted(signature_map.signature_def.items())
        }

    def status(self) -> list[VersionStatus]:
        """Every version the server knows of this model, with its state (GetModelStatus)."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self.model_spec())
        response = self._call("GetModelStatus", self._models.GetModelStatus, request, _READ_RETRY)
        states = get_model_status_pb2.ModelVersionStatus.State
        return [
            VersionStatus(
                version=status.version,
                state=states.Name(status.state),
                error_code=status.status.error_code,
                error_message=status.status.error_message,
            )
            for status in response.model_version_status
        ]

    def _call(self, method: str, rpc: Callable[..., _T], request: object, retry_on: frozenset) -> _T:
        """One RPC with a deadline per attempt, retried with exponential backoff on `retry_on` codes."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return rpc(request, timeout=self.timeout)
            except grpc.RpcError as error:
                code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
                details = error.details() if callable(getattr(error, "details", None)) else ""
                if code not in retry_on or attempt > self.retries:
                    raise ServingError(method, code, details or "", attempt) from None
            self._sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


def _parse_predict(response: predict_pb2.PredictResponse, rows: int) -> list[dict[str, float]]:
    for key in (PROBABILITIES, LABEL_NAMES):
        if key not in response.outputs:
            raise ServingError("Predict", grpc.StatusCode.INTERNAL, f"reply has no `{key}` output")
    probabilities = tf.make_ndarray(response.outputs[PROBABILITIES])
    names = tf.make_ndarray(response.outputs[LABEL_NAMES])
    if names.ndim == 2:  # one row of names per note, as batching needs; rows repeat the class order
        names = names[0]
    labels = [name.decode("utf-8") for name in names.tolist()]
    if probabilities.shape != (rows, len(labels)):
        raise ServingError(
            "Predict",
            grpc.StatusCode.INTERNAL,
            f"probabilities have shape {probabilities.shape}, expected ({rows}, {len(labels)})",
        )
    return [dict(zip(labels, map(float, row), strict=True)) for row in probabilities]


def _parse_entities(response: predict_pb2.PredictResponse, rows: int) -> list[list[Entity]]:
    missing = [key for key in ENTITY_OUTPUTS if key not in response.outputs]
    if missing:
        raise ServingError(
            "Predict", grpc.StatusCode.INTERNAL, f"reply has no {missing} outputs: not a token model?"
        )
    out = {key: tf.make_ndarray(response.outputs[key]) for key in ENTITY_OUTPUTS}
    counts = out["num_entities"].reshape(-1)
    if len(counts) != rows or any(out[key].shape[0] != rows for key in ENTITY_OUTPUTS):
        raise ServingError("Predict", grpc.StatusCode.INTERNAL, f"entity outputs do not have {rows} rows")
    results = []
    for row, count in enumerate(counts.tolist()):
        fields = zip(
            out["entity_starts"][row][:count].tolist(),
            out["entity_ends"][row][:count].tolist(),
            out["entity_types"][row][:count].tolist(),
            out["entity_scores"][row][:count].tolist(),
            strict=True,
        )
        found = [Entity(start, end, kind.decode("utf-8"), score) for start, end, kind, score in fields]
        results.append(sorted(found, key=lambda entity: (entity.start, entity.end)))
    return results


def _tensor_info(info: meta_graph_pb2.TensorInfo) -> TensorInfo:
    shape = None if info.tensor_shape.unknown_rank else tuple(dim.size for dim in info.tensor_shape.dim)
    return TensorInfo(dtype=types_pb2.DataType.Name(info.dtype), shape=shape)


def top_labels(scores: dict[str, float], top: int) -> list[tuple[str, float]]:
    """The `top` highest-scoring labels, best first (ties by label name, so the order is stable)."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]


def format_predictions(results: Sequence[dict[str, float]], top: int) -> str:
    """A table of the top labels per note: note index, rank, label, probability. No note text."""
    rows = [("note", "rank", "label", "probability")]
    for index, scores in enumerate(results):
        for rank, (label, probability) in enumerate(top_labels(scores, top), start=1):
            rows.append((str(index), str(rank), label, f"{probability:.4f}"))
    return _table(rows)


def format_entities(results: Sequence[Sequence[Entity]]) -> str:
    """A table of the entities per note: note index, start, end, type, score. No note text."""
    rows = [("note", "start", "end", "type", "score")]
    for index, found in enumerate(results):
        for entity in found:
            rows.append((str(index), str(entity.start), str(entity.end), entity.type, f"{entity.score:.4f}"))
    return _table(rows)


def format_status(versions: Sequence[VersionStatus]) -> str:
    rows = [("version", "state", "error")]
    for v in versions:
        error = "" if v.error_code == 0 else f"{v.error_code}: {v.error_message}"
        rows.append((str(v.version), v.state, error))
    return _table(rows)


def format_metadata(signatures: dict[str, SignatureInfo]) -> str:
    rows = [("signature", "method", "kind", "name", "dtype", "shape")]
    for name, signature in signatures.items():
        for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
            for key, info in sorted(tensors.items()):
                shape = "?" if info.shape is None else "[" + ", ".join(map(str, info.shape)) + "]"
                rows.append((name, signature.method_name, kind, key, info.dtype, shape))
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.client", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", default=DEFAULT_TARGET, help="host:port of the gRPC endpoint")
    common.add_argument("--model", default=DEFAULT_MODEL, help="model name in the server's config")
    common.add_argument("--version", type=int, default=None, help="pin a model version (default latest)")
    common.add_argument("--timeout", type=float, default=10.0, help="deadline per attempt, seconds")
    common.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE")
    common.add_argument("--tls", action="store_true", help="use TLS (system roots unless --root-certs)")
    common.add_argument("--root-certs", type=Path, default=None, help="PEM file of root certificates")
    common.add_argument(
        "--client-cert", type=Path, default=None, help="PEM client certificate chain (mutual TLS)"
    )
    common.add_argument("--client-key", type=Path, default=None, help="PEM client private key (mutual TLS)")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", parents=[common], help="top label probabilities per note")
    predict.add_argument("--top", type=int, default=5, help="labels shown per note")
    predict.add_argument("--text", action="append", default=[], help="a note given inline (repeatable)")
    predict.add_argument("notes", nargs="*", type=Path, metavar="NOTE_FILE", help="one note per file")
    entities = commands.add_parser(
        "entities", parents=[common], help="entities per note (a token-classification model)"
    )
    entities.add_argument("--text", action="append", default=[], help="a note given inline (repeatable)")
    entities.add_argument("notes", nargs="*", type=Path, metavar="NOTE_FILE", help="one note per file")
    commands.add_parser("status", parents=[common], help="model versions and their states")
    commands.add_parser("metadata", parents=[common], help="signatures with their inputs and outputs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: prints a table to stdout; on a server error prints the code and message to stderr."""
    parser = _parser()
    args = parser.parse_args(argv)
    notes: list[str] = []
    if args.command in ("predict", "entities"):
        if args.command == "predict" and args.top < 1:
            parser.error("--top must be at least 1")
        # newline="" keeps CRLF as sent: entity offsets index the text exactly as it is in the file.
        notes = [path.read_bytes().decode("utf-8") for path in args.notes] + list(args.text)
        if not notes:
            parser.error(f"{args.command} needs NOTE_FILE arguments or --text")
    if (args.client_cert is None) != (args.client_key is None):
        parser.error("--client-cert and --client-key go together")
    roots = args.root_certs.read_bytes() if args.root_certs else None
    cert = args.client_cert.read_bytes() if args.client_cert else None
    key = args.client_key.read_bytes() if args.client_key else None
    client = ServingClient(
        args.target,
        args.model,
        version=args.version,
        timeout=args.timeout,
        retries=args.retries,
        tls=args.tls or roots is not None or cert is not None,
        root_certificates=roots,
        client_certificate=cert,
        client_key=key,
    )
    try:
        with client:
            if args.command == "predict":
                print(format_predictions(client.predict(notes), args.top))
            elif args.command == "entities":
                print(format_entities(client.entities(notes)))
            elif args.command == "status":
                print(format_status(client.status()))
            else:
                print(format_metadata(client.metadata()))
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
