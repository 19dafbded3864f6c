"""TF Serving's batching rule on the local server: every output of a batched call is split along its
first dimension, so an output that is not `[batch, ...]` fails the call as it fails in production
(FAILED_PRECONDITION), and the export's signatures pass through batching with the stock stubs."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from serving.batching import BatchingParameters
from serving.models_config import ModelEntry
from tests.serving.fake_export import FakeClassifier, publish_version
from tests.serving.harness import (
    MODEL,
    NOTES,
    V1_LABELS,
    classify_request,
    in_process,
    predict_request,
    running,
)

BATCHING = BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)


class UnbatchedLabels(FakeClassifier):
    """The export as it was: `label_names` is `[classes]`, one list for the whole call."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        return {"probabilities": self._probabilities(text), "label_names": self.label_names}


def test_an_unbatched_output_fails_under_batching_as_in_production(tmp_path):
    module = UnbatchedLabels(V1_LABELS, seed=0)
    tf.saved_model.save(module, str(tmp_path / "export"), signatures={"serving_default": module.serve_text})
    publish_version(tmp_path / "export", tmp_path / "serving", 1)
    entry = [ModelEntry(MODEL, str(tmp_path / "serving"))]
    with running(entry) as (_, predict_stub, _):  # without batching the output passes through
        predict_stub.Predict(predict_request(NOTES), timeout=10)
    with running(entry, batching=BATCHING) as (_, predict_stub, _), pytest.raises(grpc.RpcError) as error:
        predict_stub.Predict(predict_request(NOTES[:2]), timeout=10)  # 2 rows, 3 label names
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'label_names'" in error.value.details()
    assert "0th dimension does not equal the sum of the 0th dimension sizes" in error.value.details()


def test_every_served_output_is_batched_and_predict_and_classify_pass_through_batching(exports, tmp_path):
    publish_version(exports[1], tmp_path, 1)
    with running([ModelEntry(MODEL, str(tmp_path))], batching=BATCHING) as (_, predict_stub, _):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = MODEL
        signatures = get_model_metadata_pb2.SignatureDefMap()
        predict_stub.GetModelMetadata(request, timeout=10).metadata["signature_def"].Unpack(signatures)
        for name, signature in signatures.signature_def.items():
            for output, info in signature.outputs.items():
                dims = [dim.size for dim in info.tensor_shape.dim]
                assert dims and dims[0] == -1, f"{name}.{output} is not [batch, ...]: {dims}"

        batches = [NOTES[:1], NOTES[1:], NOTES]
        barrier = threading.Barrier(len(batches))

        def call(notes):
            barrier.wait(timeout=10)
            return predict_stub.Predict(predict_request(notes), timeout=10)

        with futures.ThreadPoolExecutor(len(batches)) as pool:
            responses = list(pool.map(call, batches))
        classified = predict_stub.Classify(classify_request(NOTES), timeout=10)
    for notes, response in zip(batches, responses, strict=True):
        labels = tf.make_ndarray(response.outputs["label_names"]).astype(str).tolist()
        assert labels == [V1_LABELS] * len(notes)
        expected = in_process(exports[1], notes)["probabilities"]
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected, rtol=1e-5)
    assert [[c.label for c in row.classes] for row in classified.result.classifications] == [V1_LABELS] * 3
