"""Requests are checked against the signature and the limits before anything is built: a TensorProto
that declares a huge shape with one value is refused unexpanded, and the server's memory stays flat
under a bounded stream of such requests (a real server process on loopback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.requests import Limits, RequestError, decode_input
from tests.serving.fake_export import publish_version
from tests.serving.harness import MODEL, NOTES, predict_request

REPO = Path(__file__).resolve().parents[2]
TEXT_SPEC = meta_graph_pb2.TensorInfo(
    name="text:0",
    dtype=types_pb2.DT_STRING,
    tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=-1)]),
)


def hostile(dims: list[int], values: int = 1, dtype: int = types_pb2.DT_STRING) -> tensor_pb2.TensorProto:
    """A tensor proto that declares `dims` but carries only `values` values."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in dims)
    proto.string_val.extend([b"x"] * values)
    return proto


HOSTILE = {
    "huge batch, one value": (hostile([30_000_000]), "batch of 30000000, more than the limit 64"),
    "huge rank 2": (hostile([2, 3_000_000_000]), "expected rank 1, got 2"),
    "fewer values than declared": (hostile([8], values=1), "shape [8] needs 8 values, the tensor holds 1"),
    "negative dimension": (hostile([-5]), "negative dimension"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_declared_shape_is_checked_before_the_tensor_is_built(case, monkeypatch):
    import tensorflow as tf

    proto, fragment = HOSTILE[case]
    built = []
    monkeypatch.setattr(tf, "make_ndarray", lambda *args: built.append(args))
    with pytest.raises(RequestError) as error:
        decode_input("text", proto, TEXT_SPEC, Limits())
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in error.value.message and "input 'text'" in error.value.message
    assert not built, "the tensor was expanded before it was refused"


def test_element_limit_bounds_inputs_with_open_inner_dimensions():
    spec = meta_graph_pb2.TensorInfo(dtype=types_pb2.DT_FLOAT)
    spec.tensor_shape.dim.add(size=-1)
    spec.tensor_shape.dim.add(size=-1)
    proto = hostile([4, 1_000_000], values=0, dtype=types_pb2.DT_FLOAT)
    with pytest.raises(RequestError, match="4000000 elements, more than the limit 1000"):
        decode_input("x", proto, spec, Limits(max_elements=1000))


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_server_rss_stays_flat_under_hostile_shapes(exports, tmp_path):
    publish_version(exports[1], tmp_path / "serving", 1)
    command = [sys.executable, "-m", "serving.model_server", "--port", "0", "--model_name", MODEL]
    command += ["--model_base_path", str(tmp_path / "serving"), "--file_system_poll_wait_seconds", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        port, deadline = None, time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            if not line and server.poll() is not None:
                pytest.fail(f"server exited with {server.returncode}")
            match = re.search(r"on port (\d+)", line)
            port = int(match.group(1)) if match else None
        assert port, "server did not start"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(20):  # settle the allocator on ordinary calls first
                stub.Predict(predict_request(NOTES), timeout=30)
            before = _rss_bytes(server.pid)
            for _ in range(10):  # bounded: 40 hostile calls
                for proto, fragment in HOSTILE.values():
                    request = predict_pb2.PredictRequest()
                    request.model_spec.name = MODEL
                    request.inputs["text"].CopyFrom(proto)
                    with pytest.raises(grpc.RpcError) as error:
                        stub.Predict(request, timeout=30)
                    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert fragment in error.value.details()
            after = _rss_bytes(server.pid)
            stub.Predict(predict_request(NOTES[:1]), timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=30)
    growth = (after - before) / 2**20
    print(f"\nserver RSS {before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB after 40 hostile requests")
    assert growth < 32, f"RSS grew {growth:.0f} MiB"
