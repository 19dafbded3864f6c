"""The local model server's production guards, each shown with the stock stubs against a running server
on loopback (started from its command-line flags, as `python -m serving.model_server` starts one,
where a flag sets the guard):

- a version copied graph first is served once its variables land, without a restart; a version that
  keeps failing is retried `--max_num_load_retries` times and no more, while the previous one serves;
- a Classify example without the `text` feature is refused by name, never scored as an empty note;
- every signature the serving copy lists (only serving_default and classify) answers a well-formed
  Predict, and none answers INTERNAL;
- HandleReloadConfigRequest is refused unless `--enable_reload_config`, and an enabled reload naming a
  model that fails the op allowlist changes nothing;
- `--ssl_config_file` serves TLS, and mutual TLS with `client_verify`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from components.trainer.finetune import CLIENT_SIGNATURES, TEXT_FEATURE, save_serving_and_eval
from serving import versions
from serving.model_server import ModelServer, _arguments, build_server
from serving.models_config import ModelEntry
from serving.op_allowlist import read_saved_model
from tests.serving.fake_export import FakeClassifier, build_export, publish_version, signatures
from tests.serving.harness import (
    MODEL,
    NOTES,
    V1_LABELS,
    V2_LABELS,
    State,
    config_text,
    predict_request,
    reload_config,
    running,
    status_of,
)

POLL_FLAGS = ("--file_system_poll_wait_seconds", "0.05")


@contextlib.contextmanager
def serving(*flags: str):
    """A server built from command-line `flags` on a free loopback port; always stopped."""
    server = build_server(_arguments(["--port", "0", *flags]))
    try:
        server.start()
        yield server
    finally:
        server.stop(grace_seconds=1.0)


@contextlib.contextmanager
def connected(server: ModelServer, credentials: grpc.ChannelCredentials | None = None):
    """PredictionService and ModelService stubs on one channel (TLS with `credentials`)."""
    target = f"127.0.0.1:{server.port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    try:
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )
    finally:
        channel.close()


def model_flags(base: Path) -> tuple[str, ...]:
    return ("--model_name", MODEL, "--model_base_path", str(base))


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Seconds until `condition()` held; fails the test after `seconds`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            pytest.fail(f"{what}: not after {seconds} s")
        time.sleep(0.02)
    return time.monotonic() - started


def first_label(predict_stub) -> tuple[int, str]:
    """The served version and the first label name it answers with."""
    response = predict_stub.Predict(predict_request(NOTES[:1]), timeout=10)
    return response.model_spec.version.value, tf.make_ndarray(response.outputs["label_names"])[0, 0].decode()


# Loading: a copy in progress, and a version that never loads.


@pytest.fixture
def load_attempts(monkeypatch) -> list[tuple[int, float]]:
    """(version, monotonic time) of every load the server starts."""
    attempts: list[tuple[int, float]] = []

    class Counted(versions.ServableVersion):
        def __init__(self, version, *args, **kwargs):
            attempts.append((version, time.monotonic()))
            super().__init__(version, *args, **kwargs)

    monkeypatch.setattr(versions, "ServableVersion", Counted)
    return attempts


def copy_graph_only(export: Path, folder: Path) -> None:
    """The first step of a copy that is not atomic: saved_model.pb without its variables."""
    folder.mkdir(parents=True)
    shutil.copy(export / "saved_model.pb", folder / "saved_model.pb")


def copy_the_rest(export: Path, folder: Path) -> None:
    for child in export.iterdir():
        if child.is_dir():
            shutil.copytree(child, folder / child.name)
        elif child.name != "saved_model.pb":
            shutil.copy(child, folder / child.name)


def test_a_version_copied_graph_first_is_served_once_its_variables_land(exports, tmp_path, load_attempts):
    base = tmp_path / "serving"
    publish_version(exports[1], base, 1)
    retry_seconds = 10.0
    flags = [*model_flags(base), *POLL_FLAGS, "--load_retry_interval_micros", str(int(retry_seconds * 1e6))]
    with serving(*flags) as server, connected(server) as (predict_stub, model_stub):
        copy_graph_only(exports[2], base / "2")

        def failure() -> str:
            state, _, message = status_of(model_stub).get(2, (State.UNKNOWN, 0, ""))
            return message if state == State.END else ""

        wait_for(failure, 10, "the graph-only version 2 never failed to load")
        assert "failed to load version 2" in failure()
        assert first_label(predict_stub) == (1, V1_LABELS[0])

        copy_the_rest(exports[2], base / "2")
        seconds = wait_for(lambda: first_label(predict_stub)[0] == 2, retry_seconds, "version 2 not served")
        served = first_label(predict_stub)
        statuses = status_of(model_stub)
    print(f"\nnon-atomic copy: version 2 served {seconds:.2f} s after its variables landed")
    assert served == (2, V2_LABELS[0])
    assert statuses[2] == (State.AVAILABLE, 0, "") and statuses[1][0] == State.END
    assert seconds < retry_seconds / 2, "the completed copy waited for a timed retry"
    assert [version for version, _ in load_attempts].count(2) >= 2


def test_a_version_that_keeps_failing_is_retried_max_num_load_retries_times(exports, tmp_path, load_attempts):
    base = tmp_path / "serving"
    publish_version(exports[1], base, 1)
    retries, interval = 2, 0.2
    flags = [*model_flags(base), *POLL_FLAGS, "--max_num_load_retries", str(retries)]
    flags += ["--load_retry_interval_micros", str(int(interval * 1e6))]
    with serving(*flags) as server, connected(server) as (predict_stub, model_stub):
        copy_graph_only(exports[2], base / "2")  # its variables never come

        def tries() -> list[float]:
            return [at for version, at in load_attempts if version == 2]

        wait_for(lambda: len(tries()) == 1 + retries, 10, "the retries did not happen")
        time.sleep(5 * interval)  # long enough for more retries, were there any
        state, code, message = status_of(model_stub)[2]
        served = first_label(predict_stub)
        available = status_of(model_stub)[1]
    assert len(tries()) == 1 + retries
    assert min(np.diff(tries())) >= interval
    assert state == State.END and code != 0
    assert "failed to load version 2" in message and "variables" in message
    assert served == (1, V1_LABELS[0]) and available == (State.AVAILABLE, 0, "")


# Classify: the note must be there.


class LenientClassifier(FakeClassifier):
    """Reads a missing `text` feature as the empty note, as the export's parsing once did: only the
    server stands between a misnamed feature and a score."""

    def _parse(self, serialized: tf.Tensor) -> dict:
        spec = {TEXT_FEATURE: tf.io.FixedLenFeature([], tf.string, default_value="")}
        return tf.io.parse_example(serialized, spec)


def example(**features: bytes | int) -> tf.train.Example:
    """A tf.Example holding each feature's one value (bytes or int)."""
    result = tf.train.Example()
    for name, value in features.items():
        if isinstance(value, bytes):
            result.features.feature[name].bytes_list.value.append(value)
        else:
            result.features.feature[name].int64_list.value.append(value)
    return result


def classify_examples(*examples: tf.train.Example) -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.input.example_list.examples.extend(examples)
    return request


def test_classify_without_the_text_feature_is_refused_by_name_and_never_scored(tmp_path, signature_calls):
    module = LenientClassifier(V1_LABELS, seed=0)
    save_serving_and_eval(module, signatures(module), str(tmp_path / "export"))
    misnamed = example(txt=b"secret-note: chest pain")
    alone = module.classify(tf.constant([misnamed.SerializeToString()]))["scores"]
    empty = module.serve_text(tf.constant([""]))["probabilities"]
    np.testing.assert_allclose(alone, empty)  # the model by itself scores the empty note

    publish_version(tmp_path / "export", tmp_path / "serving", 1)
    good = example(text=NOTES[0].encode())
    cases = {
        "misnamed": (classify_examples(misnamed), 0),
        "second of two misnamed": (classify_examples(good, misnamed), 1),
        "text as an integer": (classify_examples(example(text=7)), 0),
    }
    with running([ModelEntry(MODEL, str(tmp_path / "serving"))]) as (_, predict_stub, _):
        del signature_calls[:]  # the warmup requests
        errors = {}
        for case, (request, index) in cases.items():
            with pytest.raises(grpc.RpcError) as error:
                predict_stub.Classify(request, timeout=10)
            errors[case] = (error.value.code(), error.value.details(), index)
        refused_calls = list(signature_calls)
        answered = predict_stub.Classify(classify_examples(good), timeout=10)
    for case, (code, details, index) in errors.items():
        assert code == grpc.StatusCode.INVALID_ARGUMENT, case
        assert f"example {index}: feature 'text' is missing" in details, case
        assert "secret-note" not in details, case
    assert refused_calls == [], "a request with a missing note reached the model"
    assert [c.label for c in answered.result.classifications[0].classes] == V1_LABELS
    assert signature_calls == [1]


# Signatures: the serving copy lists only what Predict can answer.


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> dict[str, Path]:
    """The export's serving copy (what the Pusher pushes) and its evaluation copy."""
    root = tmp_path_factory.mktemp("copies")
    build_export(root / "serving", V1_LABELS, eval_dir=root / "eval")
    return {"serving": root / "serving", "eval": root / "eval"}


def listed_signatures(predict_stub) -> dict[str, meta_graph_pb2.SignatureDef]:
    """GetModelMetadata's signature_def map."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert predict_stub.GetModelMetadata(request, timeout=10).metadata["signature_def"].Unpack(signatures)
    return dict(signatures.signature_def)


def inputs_for(signature: meta_graph_pb2.SignatureDef, notes: list[str], truncated: bool = False) -> dict:
    """Predict inputs built from the signature's declared input specs, one row per note: a note input
    (`text`) gets the notes, any other string input serialized tf.Examples holding them (cut short by a
    byte with `truncated`, as a broken client sends them), other dtypes zeros."""
    inputs = {}
    for key, info in signature.inputs.items():
        dims = [dim.size for dim in info.tensor_shape.dim]
        assert dims and dims[0] == -1, f"input {key!r} has no batch dimension: {dims}"
        shape = [len(notes), *dims[1:]]
        if info.dtype != types_pb2.DT_STRING:
            values = np.zeros(shape, tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
        elif key == TEXT_FEATURE:
            values = np.array(notes, dtype=object)
        else:
            serialized = [example(text=note.encode()).SerializeToString() for note in notes]
            values = np.array([value[:-1] if truncated else value for value in serialized], dtype=object)
        inputs[key] = tf.make_tensor_proto(values.reshape(shape), dtype=info.dtype)
    return inputs


def predict(predict_stub, name: str, inputs: dict) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = name
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    return predict_stub.Predict(request, timeout=10)


def test_the_serving_copy_lists_only_the_client_signatures(copies, tmp_path):
    on_disk = {
        name: {key for key in read_saved_model(path).meta_graphs[0].signature_def if not key.startswith("__")}
        for name, path in copies.items()
    }  # less the loader's own __saved_model_init_op
    assert on_disk["serving"] == set(CLIENT_SIGNATURES) == {"serving_default", "classify"}
    assert on_disk["eval"] == {"serving_default", "classify", "predict_examples", "transform_features"}
    publish_version(copies["serving"], tmp_path, 1)
    with running([ModelEntry(MODEL, str(tmp_path))]) as (_, predict_stub, _):
        assert set(listed_signatures(predict_stub)) == {"serving_default", "classify"}


# Notes of over 127 bytes, as clinical notes are: their serialized tf.Examples hold bytes that are not
# UTF-8 (two-byte lengths), which TensorFlow's error for one that does not parse quotes.
LONG_NOTES = [" ".join(NOTES[i:] + NOTES[:i]) for i in range(len(NOTES))]


@pytest.mark.parametrize("copy", ["serving", "eval"])
def test_every_listed_signature_answers_a_well_formed_predict(copies, tmp_path, copy):
    publish_version(copies[copy], tmp_path, 1)
    with running([ModelEntry(MODEL, str(tmp_path))]) as (_, predict_stub, _):
        listed = listed_signatures(predict_stub)
        answers, refusals = {}, {}
        for name, signature in listed.items():
            answers[name] = predict(predict_stub, name, inputs_for(signature, LONG_NOTES))
            try:
                predict(predict_stub, name, inputs_for(signature, LONG_NOTES, truncated=True))
            except grpc.RpcError as error:
                refusals[name] = error.code()
    if copy == "eval":  # its transform_features has sparse outputs, which Predict cannot carry
        assert set(listed) == {"serving_default", "classify", "predict_examples"}
    for name, response in answers.items():
        declared = listed[name].outputs
        assert set(response.outputs) == set(declared), name
        for key, proto in response.outputs.items():
            assert proto.dtype == declared[key].dtype, f"{name}.{key}"
            assert proto.tensor_shape.dim[0].size == len(LONG_NOTES), f"{name}.{key}"
    taking_examples = [name for name, signature in listed.items() if set(signature.inputs) != {TEXT_FEATURE}]
    assert taking_examples, "no signature takes tf.Examples"
    assert refusals == dict.fromkeys(taking_examples, grpc.StatusCode.INVALID_ARGUMENT)


# Reloading the config: off by default, and never to a model the server cannot run.


class PythonCallback(tf.Module):
    """A note-length model whose graph calls back into Python (EagerPyFunc, not in TF Serving)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        return {"length": tf.py_function(lambda t: tf.strings.length(t), [text], tf.int32)}


@pytest.fixture(scope="module")
def unservable(tmp_path_factory) -> Path:
    """A base path whose version 1 fails the op allowlist."""
    root = tmp_path_factory.mktemp("unservable")
    module = PythonCallback()
    tf.saved_model.save(module, str(root / "export"), signatures={"serving_default": module.serve_text})
    publish_version(root / "export", root / "serving", 1)
    return root / "serving"


def model_status(model_stub, name: str) -> dict[int, int]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return {s.version: s.state for s in model_stub.GetModelStatus(request, timeout=10).model_version_status}


def test_reload_is_refused_unless_enabled(exports, tmp_path):
    base, other = tmp_path / "serving", tmp_path / "other"
    publish_version(exports[1], base, 1)
    publish_version(exports[2], other, 2)
    assert _arguments(list(model_flags(base))).enable_reload_config is False
    with serving(*model_flags(base)) as server, connected(server) as (predict_stub, model_stub):
        before = dict(server.models)
        with pytest.raises(grpc.RpcError) as error:
            reload_config(model_stub, config_text((MODEL, other, ""), ("other", other, "")))
        after = dict(server.models)
        served = first_label(predict_stub)
        with pytest.raises(grpc.RpcError) as unknown:
            predict_stub.Predict(predict_request(NOTES[:1], model="other"), timeout=10)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "--enable_reload_config" in error.value.details()
    assert after.keys() == before.keys() and all(after[name] is before[name] for name in before)
    assert served == (1, V1_LABELS[0])
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_enabled_reload_refuses_a_model_that_fails_the_op_allowlist(exports, tmp_path, unservable):
    base, added = tmp_path / "serving", tmp_path / "added"
    publish_version(exports[1], base, 1)
    publish_version(exports[2], added, 1)
    with (
        serving(*model_flags(base), "--enable_reload_config") as server,
        connected(server) as (predict_stub, model_stub),
    ):
        before = server.models[MODEL]
        with pytest.raises(grpc.RpcError) as error:
            # would move MODEL to the other export too, were the config applied in part
            reload_config(model_stub, config_text((MODEL, added, ""), ("unservable", unservable, "")))
        models = dict(server.models)
        with pytest.raises(grpc.RpcError) as unknown:
            model_status(model_stub, "unservable")
        served = first_label(predict_stub)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status

        # A later good reload still applies; a model with no version folder yet is accepted and waits
        # for its first push, as stock TF Serving does (refused are only loads that failed).
        waiting = tmp_path / "waiting"
        waiting.mkdir()
        reload_config(
            model_stub,
            config_text((MODEL, base, ""), ("added", added, ""), ("waiting", waiting, "")),
        )
        added_status = model_status(model_stub, "added")
        publish_version(exports[1], waiting, 3)
        server.poll_once()
        waiting_status = model_status(model_stub, "waiting")
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.value.details()
    assert "'unservable'" in details and "allowlist" in details and "EagerPyFunc" in details
    assert list(models) == [MODEL] and models[MODEL] is before
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert served == (1, V1_LABELS[0])
    assert overall == health_pb2.HealthCheckResponse.SERVING
    assert added_status == {1: State.AVAILABLE}
    assert waiting_status == {3: State.AVAILABLE}


# TLS: certificates made at test time.


@dataclass(frozen=True)
class Identity:
    """A PEM private key and certificate."""

    key: bytes
    cert: bytes


@dataclass(frozen=True)
class Pki:
    """A CA's certificate and the identities it signed, and a client identity another CA signed."""

    ca: bytes
    server: Identity
    client: Identity
    stranger: Identity


Signed = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _certificate(name: str, signer: Signed | None = None, usage=None, ca: bool = False, san=None) -> Signed:
    """A P-256 key and its certificate, signed by `signer` (a CA's key and certificate) or by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, issuer = (signer[0], signer[1].subject) if signer else (key, subject)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return key, builder.sign(signer_key, hashes.SHA256())


def _pem(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Identity:
    private = serialization.PrivateFormat.PKCS8
    return Identity(
        key.private_bytes(serialization.Encoding.PEM, private, serialization.NoEncryption()),
        cert.public_bytes(serialization.Encoding.PEM),
    )


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca, other_ca = _certificate("test CA", ca=True), _certificate("another CA", ca=True)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    return Pki(
        ca=ca[1].public_bytes(serialization.Encoding.PEM),
        server=_pem(*_certificate("localhost", ca, ExtendedKeyUsageOID.SERVER_AUTH, san=san)),
        client=_pem(*_certificate("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)),
        stranger=_pem(*_certificate("stranger", other_ca, ExtendedKeyUsageOID.CLIENT_AUTH)),
    )


def ssl_config_file(path: Path, pki: Pki, client_verify: bool = False) -> Path:
    """An SSLConfig text proto as an operator writes one: PEM text in quoted strings."""

    def quoted(pem: bytes) -> str:
        return '"' + pem.decode().replace("\n", "\\n") + '"'

    lines = [f"server_key: {quoted(pki.server.key)}", f"server_cert: {quoted(pki.server.cert)}"]
    if client_verify:
        lines += [f"custom_ca: {quoted(pki.ca)}", "client_verify: true"]
    path.write_text("\n".join(lines) + "\n")
    return path


def call_code(server: ModelServer, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    """The status of one Predict over a channel with `credentials` (plaintext without)."""
    with connected(server, credentials) as (predict_stub, _):
        try:
            response = predict_stub.Predict(predict_request(NOTES[:1]), timeout=10)
        except grpc.RpcError as error:
            return error.code()
    assert response.model_spec.version.value == 1
    return grpc.StatusCode.OK


def test_tls_answers_clients_that_trust_the_ca_and_not_plaintext_ones(exports, tmp_path, pki):
    publish_version(exports[1], tmp_path / "serving", 1)
    config = ssl_config_file(tmp_path / "ssl.config", pki)
    with serving(*model_flags(tmp_path / "serving"), "--ssl_config_file", str(config)) as server:
        codes = {
            "trusts the CA": call_code(server, grpc.ssl_channel_credentials(root_certificates=pki.ca)),
            "plaintext": call_code(server, None),
            "system roots only": call_code(server, grpc.ssl_channel_credentials()),
        }
    assert codes == {
        "trusts the CA": grpc.StatusCode.OK,
        "plaintext": grpc.StatusCode.UNAVAILABLE,
        "system roots only": grpc.StatusCode.UNAVAILABLE,
    }


def test_mutual_tls_answers_only_clients_with_a_certificate_from_the_ca(exports, tmp_path, pki):
    publish_version(exports[1], tmp_path / "serving", 1)
    config = ssl_config_file(tmp_path / "ssl.config", pki, client_verify=True)

    def presenting(identity: Identity | None) -> grpc.ChannelCredentials:
        if identity is None:
            return grpc.ssl_channel_credentials(root_certificates=pki.ca)
        return grpc.ssl_channel_credentials(pki.ca, private_key=identity.key, certificate_chain=identity.cert)

    with serving(*model_flags(tmp_path / "serving"), "--ssl_config_file", str(config)) as server:
        codes = {
            "client certificate": call_code(server, presenting(pki.client)),
            "no certificate": call_code(server, presenting(None)),
            "another CA's certificate": call_code(server, presenting(pki.stranger)),
            "plaintext": call_code(server, None),
        }
    assert codes == {
        "client certificate": grpc.StatusCode.OK,
        "no certificate": grpc.StatusCode.UNAVAILABLE,
        "another CA's certificate": grpc.StatusCode.UNAVAILABLE,
        "plaintext": grpc.StatusCode.UNAVAILABLE,
    }
