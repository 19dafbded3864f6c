"""The TF Serving client against an in-test fake server on 127.0.0.1, and the deployment files."""

from __future__ import annotations

import math
import re
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
import yaml
from google.protobuf import text_format
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
from tensorflow_serving.config import model_server_config_pb2

from serving import client as serving_client
from serving.batching import message_class  # BatchingParameters, as TF Serving names its fields
from serving.client import ServingClient, ServingError, text_example
from serving.tls import parse_ssl_config

DEPLOY = Path(__file__).resolve().parents[2] / "serving" / "deploy"
LABELS = ("Cardiology", "Neurology", "Orthopedic", "Radiology")
NOTES = (
    "Chest pain radiating to the left arm; troponin pending.",
    "Headache and numbness of the right hand for three days.",
    "Left knee effusion after a fall, x-ray ordered.",
)


def fake_scores(text: str) -> list[float]:
    """The fake model: a softmax over four counts taken from the text, so each note scores differently."""
    logits = [text.count("a") / 4, text.count("e") / 4, text.count(" ") / 8, len(text) / 40]
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    return [x / sum(exps) for x in exps]


class FakeServing(
    prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer
):
    """Answers from `fake_scores`, records every request, and fails or stalls when told to."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.requests: list[tuple[str, object]] = []
        self.failures: list[tuple[grpc.StatusCode, str]] = []
        self.delay = 0.0
        self.release = threading.Event()

    def _enter(self, method: str, request, context) -> None:
        self.requests.append((method, request))
        if self.delay:
            self.release.wait(self.delay)
        if self.failures:
            code, details = self.failures.pop(0)
            context.abort(code, details)

    def Predict(self, request, context):
        self._enter("Predict", request, context)
        texts = [t.decode() for t in tf.make_ndarray(request.inputs["text"]).tolist()]
        response = predict_pb2.PredictResponse(model_spec=request.model_spec)
        response.model_spec.version.value = 7
        scores = np.array([fake_scores(t) for t in texts], np.float32).reshape(len(texts), len(LABELS))
        response.outputs["probabilities"].CopyFrom(tf.make_tensor_proto(scores))
        response.outputs["label_names"].CopyFrom(tf.make_tensor_proto(list(LABELS), dtype=tf.string))
        self._entities(texts, response)
        response.outputs["predicted"].CopyFrom(tf.make_tensor_proto((scores >= 0.25).astype(np.int64)))
        return response

    @staticmethod
    def _entities(texts: list[str], response) -> None:
        """A token model's outputs: every capitalized word an entity, padded as the export pads them."""
        found = [[(m.start(), m.end()) for m in re.finditer(r"[A-ZÉ]\w*", text)] for text in texts]
        width = max([len(row) for row in found] + [0])
        starts = np.full((len(texts), width), -1, np.int64)
        ends, kinds = starts.copy(), np.full((len(texts), width), b"", object)
        scores = np.zeros((len(texts), width), np.float32)
        for row, spans in enumerate(found):
            for column, (start, end) in enumerate(reversed(spans)):  # out of order: the client sorts
                starts[row, column], ends[row, column] = start, end
                kinds[row, column], scores[row, column] = b"Name", 0.5 + column / 10
        counts = np.array([len(row) for row in found], np.int64)
        for name, value in (
            ("num_entities", counts), ("entity_starts", starts), ("entity_ends", ends),
            ("entity_types", kinds), ("entity_scores", scores),
        ):  # fmt: skip
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))

    def Classify(self, request, context):
        self._enter("Classify", request, context)
        response = classification_pb2.ClassificationResponse(model_spec=request.model_spec)
        for example in request.input.example_list.examples:
            text = example.features.feature["text"].bytes_list.value[0].decode()
            classification = response.result.classifications.add()
            for label, score in zip(LABELS, fake_scores(text), strict=True):
                classification.classes.add(label=label, score=score)
        return response

    def GetModelMetadata(self, request, context):
        self._enter("GetModelMetadata", request, context)
        text = meta_graph_pb2.TensorInfo(name="serving_text:0", dtype=types_pb2.DT_STRING)
        text.tensor_shape.dim.add(size=-1)
        probabilities = meta_graph_pb2.TensorInfo(name="probs:0", dtype=types_pb2.DT_FLOAT)
        probabilities.tensor_shape.dim.add(size=-1)
        probabilities.tensor_shape.dim.add(size=len(LABELS))
        unknown = meta_graph_pb2.TensorInfo(name="names:0", dtype=types_pb2.DT_STRING)
        unknown.tensor_shape.unknown_rank = True
        signatures = get_model_metadata_pb2.SignatureDefMap()
        default = signatures.signature_def["serving_default"]
        default.method_name = "tensorflow/serving/predict"
        default.inputs["text"].CopyFrom(text)
        default.outputs["probabilities"].CopyFrom(probabilities)
        default.outputs["label_names"].CopyFrom(unknown)
        classify = signatures.signature_def["classify"]
        classify.method_name = "tensorflow/serving/classify"
        classify.inputs["inputs"].CopyFrom(text)
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=request.model_spec)
        response.metadata["signature_def"].Pack(signatures)
        return response

    def GetModelStatus(self, request, context):
        self._enter("GetModelStatus", request, context)
        states = get_model_status_pb2.ModelVersionStatus.State
        response = get_model_status_pb2.GetModelStatusResponse()
        response.model_version_status.add(version=2, state=states.Value("AVAILABLE"))
        failed = response.model_version_status.add(version=3, state=states.Value("END"))
        failed.status.error_code = 3
        failed.status.error_message = "could not load"
        return response


@pytest.fixture(scope="module")
def server():
    fake = FakeServing()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(fake, grpc_server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(fake, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    yield fake, f"127.0.0.1:{port}"
    fake.release.set()
    grpc_server.stop(grace=None)


@pytest.fixture
def fake(server) -> FakeServing:
    server[0].reset()
    yield server[0]
    server[0].release.set()


@pytest.fixture
def target(server) -> str:
    return server[1]


def test_predict_builds_the_request_and_parses_probabilities(fake, target):
    with ServingClient(target, "clinical_albert", version=5, timeout=5) as client:
        results = client.predict(list(NOTES))
    [(method, request)] = fake.requests
    assert method == "Predict"
    assert request.model_spec.name == "clinical_albert"
    assert request.model_spec.signature_name == "serving_default"
    assert request.model_spec.version.value == 5
    tensor = request.inputs["text"]
    assert tensor.dtype == types_pb2.DT_STRING
    assert [d.size for d in tensor.tensor_shape.dim] == [len(NOTES)]
    assert [s.decode() for s in tensor.string_val] == list(NOTES)
    assert len(results) == len(NOTES)
    for note, result in zip(NOTES, results, strict=True):
        assert list(result) == list(LABELS)
        assert list(result.values()) == pytest.approx(fake_scores(note), rel=1e-6)


def test_a_pair_model_gets_one_passage_per_note(fake, target):
    passages = ["Is it cardiac?", "Is it neurological?", "Is it a fracture?"]
    with ServingClient(target, timeout=5) as client:
        client.predict(list(NOTES), passages)
        _, request = fake.requests[-1]
        sent = [t.decode() for t in tf.make_ndarray(request.inputs["text_b"]).tolist()]
        assert sent == passages
        with pytest.raises(ValueError, match="one passage per note"):
            client.predict(list(NOTES), passages[:2])


def test_labels_are_those_predicted_in_label_order(fake, target):
    with ServingClient(target, timeout=5) as client:
        labels = client.labels(list(NOTES))
    _, request = fake.requests[-1]
    assert set(request.output_filter) == {"predicted", "label_names"}
    expected = [
        [name for name, p in zip(LABELS, fake_scores(note), strict=True) if p >= 0.25] for note in NOTES
    ]
    assert labels == expected and any(labels)


def test_entities_come_back_as_objects_at_the_texts_own_offsets(fake, target):
    texts = ["Seen by Dr Émile Zorn.", "", "no names here", "Ｚｏｒｎ"]
    with ServingClient(target, timeout=5) as client:
        found = client.entities(texts)
    _, request = fake.requests[-1]
    assert set(request.output_filter) == set(serving_client.ENTITY_OUTPUTS)
    assert [
        [(texts[row][e.start : e.end], e.type) for e in entities] for row, entities in enumerate(found)
    ] == [
        [("Seen", "Name"), ("Dr", "Name"), ("Émile", "Name"), ("Zorn", "Name")],
        [],
        [],
        [],  # full-width letters are not capitals to the fake: nothing
    ]
    assert all(0.5 <= e.score < 1 for e in found[0])
    with pytest.raises(TypeError):
        ServingClient(target).entities("one string")


def test_cli_entities_prints_offsets_never_text(fake, target, tmp_path, capsys):
    note = tmp_path / "note.txt"
    note.write_bytes(b"Zorn seen\r\nby Ames")
    assert serving_client.main(["entities", "--target", target, str(note)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["note", "start", "end", "type", "score"]
    assert [line.split()[:4] for line in lines[1:]] == [["0", "0", "4", "Name"], ["0", "14", "18", "Name"]]
    assert "Zorn" not in "\n".join(lines)


def test_unpinned_version_is_left_unset(fake, target):
    with ServingClient(target, "other_model", timeout=5) as client:
        client.predict(["one note"])
    request = fake.requests[0][1]
    assert request.model_spec.name == "other_model"
    assert not request.model_spec.HasField("version")


def test_classify_turns_strings_into_examples(fake, target):
    extra = text_example(NOTES[2])
    extra.features.feature["num_chars"].int64_list.value.append(len(NOTES[2]))
    with ServingClient(target, timeout=5) as client:
        from_strings = client.classify(list(NOTES[:2]))
        from_examples = client.classify([extra])
    (_, first), (_, second) = fake.requests
    assert first.model_spec.signature_name == "classify"
    sent = [
        e.features.feature["text"].bytes_list.value[0].decode() for e in first.input.example_list.examples
    ]
    assert sent == list(NOTES[:2])
    assert second.input.example_list.examples[0] == extra
    for note, result in zip(NOTES, [*from_strings, *from_examples], strict=True):
        assert list(result) == list(LABELS)
        assert list(result.values()) == pytest.approx(fake_scores(note), rel=1e-6)


def test_metadata_lists_signatures_with_inputs_and_outputs(fake, target):
    with ServingClient(target, timeout=5) as client:
        signatures = client.metadata()
    request = fake.requests[0][1]
    assert list(request.metadata_field) == ["signature_def"]
    assert request.model_spec.name == "clinical_albert"
    assert sorted(signatures) == ["classify", "serving_default"]
    default = signatures["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs["text"] == serving_client.TensorInfo("DT_STRING", (-1,))
    assert default.outputs["probabilities"] == serving_client.TensorInfo("DT_FLOAT", (-1, len(LABELS)))
    assert default.outputs["label_names"].shape is None
    assert signatures["classify"].method_name == "tensorflow/serving/classify"


def test_status_reports_versions_states_and_errors(fake, target):
    with ServingClient(target, timeout=5) as client:
        versions = client.status()
    assert fake.requests[0][0] == "GetModelStatus"
    assert [(v.version, v.state, v.error_code) for v in versions] == [(2, "AVAILABLE", 0), (3, "END", 3)]
    assert versions[1].error_message == "could not load"


def test_unavailable_is_retried_with_exponential_backoff(fake, target):
    fake.failures = [(grpc.StatusCode.UNAVAILABLE, "warming up")] * 2
    waits: list[float] = []
    with ServingClient(target, timeout=5, retries=3, backoff=0.05, sleep=waits.append) as client:
        results = client.predict([NOTES[0]])
    assert [m for m, _ in fake.requests] == ["Predict"] * 3
    assert waits == pytest.approx([0.05, 0.1])
    assert list(results[0].values()) == pytest.approx(fake_scores(NOTES[0]), rel=1e-6)


def test_retries_run_out(fake, target):
    fake.failures = [(grpc.StatusCode.UNAVAILABLE, "down")] * 5
    client = ServingClient(target, timeout=5, retries=2, sleep=lambda s: None)
    with client, pytest.raises(ServingError) as raised:
        client.status()
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.attempts == 3
    assert len(fake.requests) == 3


def test_invalid_argument_fails_at_once_with_code_and_message(fake, target):
    fake.failures = [(grpc.StatusCode.INVALID_ARGUMENT, "input tensor alias not found")]
    client = ServingClient(target, timeout=5, retries=3, sleep=lambda s: None)
    with client, pytest.raises(ServingError) as raised:
        client.predict([NOTES[0]])
    assert len(fake.requests) == 1
    error = raised.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details == "input tensor alias not found"
    assert "INVALID_ARGUMENT" in str(error) and "input tensor alias not found" in str(error)
    assert NOTES[0] not in str(error)


def test_deadline_stops_a_slow_predict_without_retry(fake, target):
    fake.delay = 3.0
    with ServingClient(target, timeout=0.3, retries=3, sleep=lambda s: None) as client:
        start = time.monotonic()
        with pytest.raises(ServingError) as raised:
            client.predict([NOTES[0]])
        elapsed = time.monotonic() - start
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 1.5
    assert len(fake.requests) == 1


def test_deadline_exceeded_is_retried_for_reads(fake, target):
    fake.delay = 3.0
    client = ServingClient(target, timeout=0.2, retries=1, sleep=lambda s: None)
    with client, pytest.raises(ServingError) as raised:
        client.status()
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert raised.value.attempts == 2


def test_tls_uses_ssl_channel_credentials(monkeypatch):
    seen = {}
    monkeypatch.setattr(
        serving_client.grpc,
        "ssl_channel_credentials",
        lambda root_certificates=None, private_key=None, certificate_chain=None: (
            "creds",
            root_certificates,
            private_key,
            certificate_chain,
        ),
    )

    def secure_channel(target, credentials):
        seen.update(target=target, credentials=credentials)
        return grpc.insecure_channel(target)

    monkeypatch.setattr(serving_client.grpc, "secure_channel", secure_channel)
    ServingClient("serving.example:443", tls=True, root_certificates=b"PEM").close()
    assert seen == {"target": "serving.example:443", "credentials": ("creds", b"PEM", None, None)}
    ServingClient("serving.example:443", tls=True, client_certificate=b"CERT", client_key=b"KEY").close()
    assert seen["credentials"] == ("creds", None, b"KEY", b"CERT")
    with pytest.raises(ValueError, match="tls is off"):
        ServingClient("serving.example:443", root_certificates=b"PEM")
    with pytest.raises(ValueError, match="both client_certificate and client_key"):
        ServingClient("serving.example:443", tls=True, client_certificate=b"CERT")


def _table_rows(text: str) -> list[list[str]]:
    return [line.split("  ") for line in text.strip().splitlines()]


def test_cli_predict_prints_top_labels_per_note_index(fake, target, tmp_path, capsys):
    files = []
    for i, note in enumerate(NOTES[:2]):
        files.append(tmp_path / f"note{i}.txt")
        files[-1].write_text(note, encoding="utf-8")
    argv = ["predict", "--target", target, "--model", "clinical_albert", "--top", "2"]
    code = serving_client.main([*argv, "--text", NOTES[2], *map(str, files)])
    out = capsys.readouterr().out
    assert code == 0
    for note in NOTES:
        assert note not in out
    lines = out.strip().splitlines()
    assert lines[0].split() == ["note", "rank", "label", "probability"]
    rows = [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in lines[1:]]
    assert len(rows) == 2 * len(NOTES)
    for index, note in enumerate(NOTES):
        # best first; equal probabilities in label order
        ranked = sorted(zip(LABELS, fake_scores(note), strict=True), key=lambda lp: (-lp[1], lp[0]))[:2]
        expected = [[str(index), str(r), label, f"{p:.4f}"] for r, (label, p) in enumerate(ranked, 1)]
        assert rows[2 * index : 2 * index + 2] == expected


def test_cli_status_and_metadata(fake, target, capsys):
    assert serving_client.main(["status", "--target", target]) == 0
    status = capsys.readouterr().out
    assert "AVAILABLE" in status and "3: could not load" in status
    assert serving_client.main(["metadata", "--target", target]) == 0
    metadata = capsys.readouterr().out.splitlines()
    assert any(
        line.split()[:4] == ["serving_default", "tensorflow/serving/predict", "input", "text"]
        for line in metadata
    )
    assert any("[-1, 4]" in line and "probabilities" in line for line in metadata)


def test_cli_reports_server_errors_on_stderr(fake, target, capsys):
    fake.failures = [(grpc.StatusCode.NOT_FOUND, "Servable not found")]
    code = serving_client.main(["predict", "--target", target, "--retries", "0", "--text", NOTES[0]])
    captured = capsys.readouterr()
    assert code == 1
    assert "NOT_FOUND" in captured.err and "Servable not found" in captured.err
    assert NOTES[0] not in captured.err + captured.out


# -- deployment files ---------------------------------------------------------------------------------


def _models_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_models_config_serves_the_latest_two_versions():
    config = _models_config((DEPLOY / "models.config").read_text())
    [model] = config.model_config_list.config
    assert model.name == serving_client.DEFAULT_MODEL
    assert model.base_path == "/models/clinical_albert"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 2


def test_batching_parameters_parse_and_are_consistent():
    params = text_format.Parse((DEPLOY / "batching_parameters.txt").read_text(), message_class()())
    for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"):
        assert params.HasField(name) and getattr(params, name).value > 0, name
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == params.max_batch_size.value


def _published(port: str | dict) -> tuple[str, str, str]:
    """(host address, host port, container port) of a compose `ports` entry, short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), str(port.get("published", "")), str(port["target"])
    parts = port.split(":")
    if len(parts) < 3:  # "8500" or "8500:8500" publish on every interface
        return "", parts[0], parts[-1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def test_docker_compose_mounts_the_push_directory_and_sets_the_flags():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    [service] = compose["services"].values()
    assert service["image"] == "tensorflow/serving:2.16.1"
    mounts = {m["target"]: m for m in service["volumes"]}
    assert all(m["read_only"] is True for m in mounts.values())
    models = mounts["/models/clinical_albert"]
    assert models["source"].endswith("/serving}")
    flags = dict(arg.lstrip("-").split("=", 1) for arg in service["command"])
    assert flags["model_config_file"] in mounts and flags["batching_parameters_file"] in mounts
    assert Path(mounts[flags["model_config_file"]]["source"]).name == "models.config"
    assert Path(mounts[flags["batching_parameters_file"]]["source"]).name == "batching_parameters.txt"
    assert (DEPLOY / mounts[flags["model_config_file"]]["source"]).is_file()
    assert (DEPLOY / mounts[flags["batching_parameters_file"]]["source"]).is_file()
    assert flags["enable_batching"] == "true"
    assert int(flags["file_system_poll_wait_seconds"]) > 0
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    # Only gRPC is published, on the host's loopback; REST is used from inside the container only.
    assert [_published(port) for port in service["ports"]] == [("127.0.0.1", "8500", "8500")]
    assert "/dev/tcp/127.0.0.1/8501" in service["healthcheck"]["test"][-1]
    assert service["healthcheck"]["test"][0] == "CMD"
    assert int(service["user"].split(":")[0]) != 0
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]


def test_compose_tls_override_and_ssl_config_example():
    base = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    tls = yaml.safe_load((DEPLOY / "docker-compose.tls.yml").read_text())["services"]
    assert set(tls) == set(base)
    [name] = base
    # Compose replaces a command list, so the override repeats the base flags and adds one.
    assert tls[name]["command"] == [*base[name]["command"], "--ssl_config_file=/tls/ssl.config"]
    assert "ports" not in tls[name]
    [mount] = tls[name]["volumes"]
    assert mount["target"] == "/tls/ssl.config" and mount["read_only"] is True
    assert mount["source"].startswith("${SSL_CONFIG_FILE:?")  # no default: the template is never mounted
    # The template is the SSLConfig text proto that both servers read, with placeholders, not keys.
    config = parse_ssl_config((DEPLOY / "ssl.config.example").read_text(), origin="ssl.config.example")
    assert config.require_client_auth and config.client_ca
    for pem in (config.server_key, config.server_cert, config.client_ca):
        [body] = pem.decode().splitlines()[1:-1]
        assert body.startswith("REPLACE WITH"), body


def test_kubernetes_deployment_service_and_config():
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    by_kind = {doc["kind"]: doc for doc in documents}
    assert set(by_kind) == {"ConfigMap", "Deployment", "Service", "NetworkPolicy"}
    deployment = by_kind["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    pod = deployment["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "tensorflow/serving:2.16.1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/clinical_albert/metadata"
    assert container["livenessProbe"]["tcpSocket"]["port"] == 8500
    assert {"requests", "limits"} <= set(container["resources"])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    models = mounts["/models/clinical_albert"]
    assert models["readOnly"] is True
    assert volumes[models["name"]]["persistentVolumeClaim"]["claimName"] == "clinical-albert-serving"
    flags = dict(arg.lstrip("-").split("=", 1) for arg in container["args"])
    config_dir = mounts["/config"]
    assert volumes[config_dir["name"]]["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    data = by_kind["ConfigMap"]["data"]
    assert Path(flags["model_config_file"]).name in data
    assert Path(flags["batching_parameters_file"]).name in data
    # The ConfigMap carries the same settings as the files docker-compose mounts.
    assert _models_config(data["models.config"]) == _models_config((DEPLOY / "models.config").read_text())
    batching = message_class()
    assert text_format.Parse(data["batching_parameters.txt"], batching()) == text_format.Parse(
        (DEPLOY / "batching_parameters.txt").read_text(), batching()
    )
    # Only the gRPC port, inside the cluster.
    service = by_kind["Service"]["spec"]
    grpc_port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
    assert service["type"] == "ClusterIP"
    assert service["selector"] == deployment["selector"]["matchLabels"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["ports"]] == [("grpc", 8500, "grpc")]
    assert grpc_port == 8500
    # The NetworkPolicy isolates the serving pods: gRPC from labelled clients in, nothing else in or out.
    policy = by_kind["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == deployment["template"]["metadata"]["labels"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    [rule] = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"clinical-albert-client": "true"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": grpc_port}]
    assert policy["egress"] == []
    # Not root, nothing writable but /tmp, no API token.
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp"} and "emptyDir" in volumes[mounts["/tmp"]["name"]]
