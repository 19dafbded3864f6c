"""The local TF-Serving-protocol server over a real socket: answers equal the in-process model's, versions
roll out under load without a failed request, bad versions and bad requests are refused by name,
batching merges concurrent calls without changing answers, and a config reload swaps the model set."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from serving.batching import BatchingParameters, load_batching_parameters, parse_batching_parameters
from serving.model_server import ModelServer, _arguments
from serving.models_config import ModelEntry, VersionPolicy, parse_models_config
from serving.servable import WARMUP_FILE, ServableVersion
from tests.serving.fake_export import publish_corrupt_version, publish_version
from tests.serving.harness import (
    MODEL,
    NOTES,
    V1_LABELS,
    V2_LABELS,
    State,
    classify_request,
    config_text,
    in_process,
    predict_request,
    reload_config,
    running,
    status_of,
)


@pytest.fixture(scope="module")
def served(exports, tmp_path_factory):
    """One server for the read-only tests: version 1 of MODEL."""
    base = tmp_path_factory.mktemp("served")
    publish_version(exports[1], base, 1)
    with running([ModelEntry(MODEL, str(base))]) as stubs:
        yield stubs


def test_predict_equals_in_process_model(served, exports):
    _, predict_stub, _ = served
    response = predict_stub.Predict(predict_request(NOTES), timeout=10)
    expected = in_process(exports[1], NOTES)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"])
    assert tf.make_ndarray(response.outputs["label_names"]).astype(str).tolist() == [V1_LABELS] * len(NOTES)
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"

    filtered = predict_request(NOTES[:1])
    filtered.output_filter.append("probabilities")
    response = predict_stub.Predict(filtered, timeout=10)
    assert set(response.outputs) == {"probabilities"}


def test_classify_scores_and_labels(served, exports):
    _, predict_stub, _ = served
    response = predict_stub.Classify(classify_request(NOTES), timeout=10)
    expected = in_process(exports[1], NOTES)["probabilities"]
    assert response.model_spec.signature_name == "classify"
    assert len(response.result.classifications) == len(NOTES)
    for row, classification in enumerate(response.result.classifications):
        assert [c.label for c in classification.classes] == V1_LABELS
        np.testing.assert_allclose([c.score for c in classification.classes], expected[row], rtol=1e-6)


def test_metadata_lists_signatures(served):
    _, predict_stub, _ = served
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append("signature_def")
    response = predict_stub.GetModelMetadata(request, timeout=10)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "classify"} <= set(signatures.signature_def)
    assert set(signatures.signature_def["serving_default"].inputs) == {"text"}
    assert set(signatures.signature_def["serving_default"].outputs) == {"probabilities", "label_names"}
    assert signatures.signature_def["classify"].method_name == tf.saved_model.CLASSIFY_METHOD_NAME
    assert response.model_spec.version.value == 1


def test_status_shows_available(served):
    _, _, model_stub = served
    assert status_of(model_stub) == {1: (State.AVAILABLE, 0, "")}
    with pytest.raises(grpc.RpcError) as error:
        status_of(model_stub, version=7)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_service_follows_model_availability(exports, tmp_path):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    base = tmp_path / "base"
    base.mkdir()
    with running([ModelEntry(MODEL, str(base))]) as (server, _, _):
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            health_stub = health_pb2_grpc.HealthStub(channel)

            def check(name: str) -> int:
                return health_stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status

            serving, not_serving = (
                health_pb2.HealthCheckResponse.SERVING,
                health_pb2.HealthCheckResponse.NOT_SERVING,
            )
            assert check("") == not_serving and check(MODEL) == not_serving  # no version yet
            publish_version(exports[1], base, 1)
            server.poll_once()
            assert check("") == serving and check(MODEL) == serving
        finally:
            channel.close()


def _wrong_dtype():
    request = predict_request(NOTES)
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([1.0, 2.0], dtype=tf.float32))
    return request


def _missing_input():
    request = predict_request(NOTES)
    del request.inputs["text"]
    request.inputs["note"].CopyFrom(tf.make_tensor_proto(NOTES, dtype=tf.string))
    return request


def _invalid_utf8():
    request = predict_request(NOTES)
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([b"ok", b"caf\xc3 \xff"], dtype=tf.string))
    return request


BAD_REQUESTS = {
    "wrong dtype": (_wrong_dtype, grpc.StatusCode.INVALID_ARGUMENT, "expected DT_STRING, got DT_FLOAT"),
    "missing input": (_missing_input, grpc.StatusCode.INVALID_ARGUMENT, "missing input(s) ['text']"),
    "empty batch": (
        lambda: predict_request(np.array([], dtype=object)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "empty batch",
    ),
    "batch too large": (lambda: predict_request(NOTES * 3), grpc.StatusCode.INVALID_ARGUMENT, "limit 8"),
    "note too long": (
        lambda: predict_request(["ok", "secret-note " * 60]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "item 1: 720 characters, more than the limit 500",
    ),
    "invalid utf-8": (_invalid_utf8, grpc.StatusCode.INVALID_ARGUMENT, "item 1: invalid UTF-8"),
    "unknown signature": (
        lambda: predict_request(NOTES, signature_name="nope"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown signature 'nope'",
    ),
    "unknown model": (lambda: predict_request(NOTES, model="other"), grpc.StatusCode.NOT_FOUND, "'other'"),
    "unknown version": (lambda: predict_request(NOTES, version=9), grpc.StatusCode.NOT_FOUND, "version 9"),
    "message too large": (
        lambda: predict_request(["x" * (2 << 20)]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_refused_by_name_and_serving_goes_on(served, case):
    _, predict_stub, _ = served
    make, code, fragment = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as error:
        predict_stub.Predict(make(), timeout=10)
    assert error.value.code() == code
    assert fragment in error.value.details()
    assert "secret-note" not in error.value.details()
    response = predict_stub.Predict(predict_request(NOTES[:1]), timeout=10)
    assert tf.make_ndarray(response.outputs["probabilities"]).shape == (1, len(V1_LABELS))


def test_rollout_under_load_then_corrupt_version(exports, tmp_path):
    """v2 replaces v1 while a client keeps calling, with no failed call; a corrupt v3 never replaces v2."""
    base = tmp_path / "serving"
    publish_version(exports[1], base, 1)
    sent, failures, first_labels = [0], [], []
    stop = threading.Event()

    def client(stub):
        while not stop.is_set():
            sent[0] += 1
            try:
                response = stub.Predict(predict_request(NOTES[:2]), timeout=10)
                first_labels.append(tf.make_ndarray(response.outputs["label_names"])[0, 0].decode())
            except grpc.RpcError as error:
                failures.append(error.code())

    with running([ModelEntry(MODEL, str(base))], poll_seconds=0.2) as (_, predict_stub, model_stub):
        thread = threading.Thread(target=client, args=(predict_stub,), daemon=True)
        thread.start()
        try:
            time.sleep(0.3)
            published = time.monotonic()
            publish_version(exports[2], base, 2)
            while first_labels[-1] != V2_LABELS[0] and time.monotonic() - published < 30:
                time.sleep(0.02)
            switch_seconds = time.monotonic() - published
            assert first_labels[-1] == V2_LABELS[0], "v2 was never served"

            publish_corrupt_version(base, 3)
            deadline = time.monotonic() + 20
            while 3 not in status_of(model_stub) and time.monotonic() < deadline:
                time.sleep(0.05)
            answered = len(first_labels)
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join(timeout=15)
        statuses = status_of(model_stub)
        final = predict_stub.Predict(predict_request(NOTES[:1]), timeout=10)

    print(f"\nrollout: {sent[0]} sent, {len(failures)} failed, v2 served {switch_seconds:.2f} s after copy")
    assert not failures
    assert len(first_labels) > answered, "requests stopped being answered after v3 appeared"
    seen = first_labels[first_labels.index(V2_LABELS[0]) :]
    assert set(seen) == {V2_LABELS[0]}, "an answer from v1 came after v2 took over"
    assert statuses[1][0] == State.END and statuses[2][0] == State.AVAILABLE
    state, code, message = statuses[3]
    assert state == State.END and code != 0 and "failed to load version 3" in message
    assert final.model_spec.version.value == 2


def test_failed_warmup_keeps_version_out(exports, tmp_path):
    base = tmp_path / "serving"
    publish_version(exports[1], base, 1)
    staged = tmp_path / "bad_warmup"
    shutil.copytree(exports[2], staged)
    request = predict_request(NOTES[:1], signature_name="no_such_signature")
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    with tf.io.TFRecordWriter(str(staged / WARMUP_FILE)) as writer:
        writer.write(log.SerializeToString())
    publish_version(staged, base, 2)
    with running([ModelEntry(MODEL, str(base))]) as (_, predict_stub, model_stub):
        statuses = status_of(model_stub)
        response = predict_stub.Predict(predict_request(NOTES[:1]), timeout=10)
    assert statuses[1] == (State.AVAILABLE, 0, "")
    assert statuses[2][0] == State.END and "unknown signature 'no_such_signature'" in statuses[2][2]
    assert response.model_spec.version.value == 1


def test_all_versions_policy_serves_each_version_by_number(exports, tmp_path):
    base = tmp_path / "serving"
    for version, export in exports.items():
        publish_version(export, base, version)
    entry = ModelEntry(MODEL, str(base), VersionPolicy("all"))
    with running([entry]) as (_, predict_stub, _):
        labels = {
            version: tf.make_ndarray(
                predict_stub.Predict(predict_request(NOTES[:1], version=version), timeout=10).outputs[
                    "label_names"
                ]
            )[0, 0].decode()
            for version in (1, 2)
        }
        latest = predict_stub.Predict(predict_request(NOTES[:1]), timeout=10).model_spec.version.value
    assert labels == {1: V1_LABELS[0], 2: V2_LABELS[0]}
    assert latest == 2


def test_stopped_server_refuses_calls(exports, tmp_path):
    base = tmp_path / "serving"
    publish_version(exports[1], base, 1)
    server = ModelServer([ModelEntry(MODEL, str(base))], port=0, poll_seconds=0)
    port = server.start()
    server.stop(grace_seconds=0.5)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(predict_request(NOTES[:1]), timeout=2)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_models_config_policies():
    text = """
    model_config_list {
      config { name: "a" base_path: "serving/a" model_platform: "tensorflow" }
      config { name: "b" base_path: "serving/b"
               model_version_policy { latest { num_versions: 2 } } }
      config { name: "c" base_path: "serving/c"
               model_version_policy { specific { versions: 3 versions: 5 } } }
      config { name: "d" base_path: "serving/d" model_version_policy { all {} } }
    }
    """
    entries = {entry.name: entry for entry in parse_models_config(text)}
    on_disk = [1, 5, 3, 4]
    assert entries["a"].base_path == "serving/a"
    assert entries["a"].policy.select(on_disk) == [5]
    assert entries["b"].policy.select(on_disk) == [4, 5]
    assert entries["c"].policy.select(on_disk) == [3, 5]
    assert entries["d"].policy.select(on_disk) == [1, 3, 4, 5]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            'model_config_list { config { name: "a" base_path: "x" } config { name: "a" base_path: "y" } }',
            "twice",
        ),
        ('model_config_list { config { name: "a" } }', "base_path"),
        ("model_config_list {}", "no models"),
        ("model_config_list { config { nme: 1 } }", "not a ModelServerConfig"),
    ],
)
def test_models_config_refuses_bad_files(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_models_config(text, origin="models.config")


def test_cli_needs_one_model_source():
    with pytest.raises(SystemExit):
        _arguments(["--model_name", MODEL])
    with pytest.raises(SystemExit):
        _arguments(["--model_base_path", "x", "--model_config_file", "models.config", "--model_name", MODEL])
    args = _arguments(["--model_name", MODEL, "--model_base_path", "runs/local/serving"])
    assert (args.host, args.port, args.file_system_poll_wait_seconds) == ("127.0.0.1", 8500, 1.0)


DEPLOY = Path(__file__).resolve().parents[2] / "serving" / "deploy"
BATCH_TIMEOUT_S = 0.5
BATCHING = BatchingParameters(
    max_batch_size=6,
    batch_timeout_micros=int(BATCH_TIMEOUT_S * 1e6),
    max_enqueued_batches=4,
    num_batch_threads=1,
    allowed_batch_sizes=(2, 4, 6),
)


@pytest.fixture(scope="module")
def batched(exports, tmp_path_factory):
    """A server with batching on (batches of up to 6 rows, 0.5 s timeout) serving version 1."""
    base = tmp_path_factory.mktemp("batched")
    publish_version(exports[1], base, 1)
    with running([ModelEntry(MODEL, str(base))], batching=BATCHING) as stubs:
        yield stubs


def test_batching_parameters_file_parses_with_tf_serving_field_names():
    params = load_batching_parameters(DEPLOY / "batching_parameters.txt")
    assert (params.max_batch_size, params.batch_timeout_micros) == (32, 2000)
    assert (params.num_batch_threads, params.max_enqueued_batches) == (4, 100)
    assert params.allowed_batch_sizes == (8, 16, 32)
    assert [params.padded_size(n) for n in (1, 8, 9, 32)] == [8, 8, 16, 32]
    defaults = parse_batching_parameters("max_batch_size { value: 5 }")
    assert (defaults.max_batch_size, defaults.batch_timeout_micros, defaults.max_enqueued_batches) == (
        5,
        0,
        10,
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("max_batch_size: 4", "not a BatchingParameters"),
        ("max_batch_size { value: 4 } batch_size_limit { value: 2 }", "not a BatchingParameters"),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "end with max_batch_size 8"),
        ("max_batch_size { value: 0 }", "max_batch_size must be at least 1"),
    ],
)
def test_batching_parameters_refuses_bad_files(text, fragment):
    with pytest.raises(ValueError, match=fragment) as error:
        parse_batching_parameters(text, origin="batching.txt")
    assert str(error.value).startswith("batching.txt: ")


def test_batching_merges_concurrent_requests_with_unbatched_answers(batched, exports, signature_calls):
    _, predict_stub, _ = batched
    notes = [[NOTES[0]], NOTES[1:3], [NOTES[2]], ["Short note."], [NOTES[1]]]  # 6 rows in all
    barrier = threading.Barrier(len(notes))

    def call(batch: list[str]):
        barrier.wait(timeout=10)
        return predict_stub.Predict(predict_request(batch), timeout=10)

    with futures.ThreadPoolExecutor(len(notes)) as pool:
        responses = list(pool.map(call, notes))
    for batch, response in zip(notes, responses, strict=True):
        expected = in_process(exports[1], batch)
        got = tf.make_ndarray(response.outputs["probabilities"])
        np.testing.assert_allclose(got, expected["probabilities"], rtol=1e-5)
        assert tf.make_ndarray(response.outputs["label_names"]).astype(str).tolist() == [V1_LABELS] * len(
            batch
        )
    print(
        f"\nbatching: {len(notes)} requests answered by {len(signature_calls)} call(s) of {signature_calls}"
    )
    assert len(signature_calls) < len(notes)
    assert max(signature_calls) > max(len(batch) for batch in notes)
    assert set(signature_calls) <= set(BATCHING.allowed_batch_sizes)


def test_batch_timeout_bounds_latency(batched, signature_calls):
    _, predict_stub, _ = batched
    started = time.monotonic()
    alone = predict_stub.Predict(predict_request(NOTES[:1]), timeout=10)
    alone_seconds = time.monotonic() - started
    started = time.monotonic()
    full = predict_stub.Predict(predict_request((NOTES * 2)[:6]), timeout=10)
    full_seconds = time.monotonic() - started
    print(f"\nlatency: lone request {alone_seconds:.3f} s, full batch {full_seconds:.3f} s")
    assert BATCH_TIMEOUT_S <= alone_seconds < BATCH_TIMEOUT_S + 2.0, "a partial batch waits the timeout"
    assert full_seconds < BATCH_TIMEOUT_S, "a full batch runs without waiting"
    assert signature_calls == [2, 6]  # the lone row padded to the smallest allowed size
    assert tf.make_ndarray(alone.outputs["probabilities"]).shape == (1, len(V1_LABELS))
    assert tf.make_ndarray(full.outputs["probabilities"]).shape == (6, len(V1_LABELS))


def test_batching_refuses_a_request_over_max_batch_size(batched):
    _, predict_stub, _ = batched
    with pytest.raises(grpc.RpcError) as error:
        predict_stub.Predict(predict_request(["secret-note"] * 7), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "maximum batch size 6" in error.value.details()
    assert "secret-note" not in error.value.details()


def test_full_batch_queue_answers_unavailable(exports, tmp_path, monkeypatch):
    base = tmp_path / "serving"
    publish_version(exports[1], base, 1)
    params = BatchingParameters(max_batch_size=4, max_enqueued_batches=1, num_batch_threads=1)
    with running([ModelEntry(MODEL, str(base))], batching=params) as (server, predict_stub, _):
        entered, release = threading.Event(), threading.Event()
        real = ServableVersion.call_signature

        def blocking(self, name, inputs):
            entered.set()
            release.wait(timeout=20)
            return real(self, name, inputs)

        monkeypatch.setattr(ServableVersion, "call_signature", blocking)
        with futures.ThreadPoolExecutor(2) as pool:
            running_call = pool.submit(predict_stub.Predict, predict_request(NOTES[:1] * 4), timeout=20)
            assert entered.wait(timeout=10)
            queued_call = pool.submit(predict_stub.Predict, predict_request(NOTES[:1] * 4), timeout=20)
            deadline = time.monotonic() + 10
            while server.batcher.pending() < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as error:
                predict_stub.Predict(predict_request(NOTES[:1]), timeout=10)
            release.set()
            answered = [call.result().model_spec.version.value for call in (running_call, queued_call)]
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "queue" in error.value.details() and "full" in error.value.details()
    assert answered == [1, 1]


def test_reload_config_swaps_models_and_keeps_unchanged_ones(exports, tmp_path):
    bases = {name: tmp_path / name for name in ("kept", "policy", "removed", "added")}
    for name, base in bases.items():
        for version, export in exports.items():
            if name != "kept" or version == 1:
                publish_version(export, base, version)
    initial = [ModelEntry(name, str(bases[name])) for name in ("kept", "policy", "removed")]
    with running(initial, allow_reload=True) as (server, predict_stub, model_stub):
        kept_before = server.models["kept"].get(None)

        def served_versions(name: str) -> dict[int, int]:
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = name
            response = model_stub.GetModelStatus(request, timeout=10)
            return {s.version: s.state for s in response.model_version_status}

        assert served_versions("policy") == {2: State.AVAILABLE}
        invalid = [
            config_text(("kept", bases["kept"], ""), ("kept", bases["added"], "")),
            config_text(("kept", bases["kept"], "model_version_policy { specific {} }")),
            "model_config_list {}",
        ]
        for text in invalid:
            with pytest.raises(grpc.RpcError) as error:
                reload_config(model_stub, text)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert sorted(server.models) == ["kept", "policy", "removed"]
        assert served_versions("policy") == {2: State.AVAILABLE}

        response = reload_config(
            model_stub,
            config_text(
                ("kept", bases["kept"], ""),
                ("policy", bases["policy"], "model_version_policy { specific { versions: 1 } }"),
                ("added", bases["added"], "model_version_policy { all {} }"),
            ),
        )
        assert response.status.error_code == 0
        assert server.models["kept"].get(None) is kept_before, "an unchanged model was reloaded"
        assert served_versions("policy") == {1: State.AVAILABLE, 2: State.END}
        assert served_versions("added") == {1: State.AVAILABLE, 2: State.AVAILABLE}
        added_v1 = predict_stub.Predict(predict_request(NOTES[:1], model="added", version=1), timeout=10)
        assert tf.make_ndarray(added_v1.outputs["label_names"])[0, 0].decode() == V1_LABELS[0]
        with pytest.raises(grpc.RpcError) as error:
            predict_stub.Predict(predict_request(NOTES[:1], model="removed"), timeout=10)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        kept = predict_stub.Predict(predict_request(NOTES[:1], model="kept"), timeout=10)
        assert kept.model_spec.version.value == 1


def test_cli_batching_flags():
    base = ["--model_name", MODEL, "--model_base_path", "runs/local/serving"]
    assert _arguments(base).enable_batching is False
    assert _arguments([*base, "--enable_batching"]).enable_batching is True
    args = _arguments([*base, "--enable_batching=true", "--batching_parameters_file", "b.txt"])
    assert args.enable_batching is True and args.batching_parameters_file == "b.txt"
    assert _arguments([*base, "--enable_batching=false"]).enable_batching is False
    with pytest.raises(SystemExit):
        _arguments([*base, "--batching_parameters_file", "b.txt"])


def test_classify_is_batched_too(batched, exports, signature_calls):
    _, predict_stub, _ = batched
    response = predict_stub.Classify(classify_request(NOTES), timeout=10)
    expected = in_process(exports[1], NOTES)["probabilities"]
    assert signature_calls == [4]  # three examples padded to the allowed size 4
    assert len(response.result.classifications) == len(NOTES)
    for row, classification in enumerate(response.result.classifications):
        assert [c.label for c in classification.classes] == V1_LABELS
        np.testing.assert_allclose([c.score for c in classification.classes], expected[row], rtol=1e-5)
