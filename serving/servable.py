"""One loaded SavedModel version: its client signatures, and Predict and Classify answered by them.

A version is loaded only after its ops pass the TF Serving allowlist, however the load was started.
Only signatures whose inputs and outputs are all dense tensors are served and listed: Predict cannot
carry a sparse or ragged output, so any other signature could only ever answer an internal error.
With server-side batching every call goes through the batcher, which splits every output along its
first dimension as TF Serving's batching does.
"""

from __future__ import annotations

import logging
import os
import re
from functools import partial

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2

from serving.batching import BatchScheduler, BatchTooLarge, OutputNotBatched, QueueFull
from serving.op_allowlist import assert_servable, read_saved_model
from serving.requests import Limits, RequestError, check_batch, check_text, decode_input, invalid

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def is_dense(signature: meta_graph_pb2.SignatureDef) -> bool:
    """Whether every input and output of `signature` is a plain (named, dense) tensor."""
    infos = [*signature.inputs.values(), *signature.outputs.values()]
    return all(info.WhichOneof("encoding") == "name" for info in infos)


class ServableVersion:
    """One loaded SavedModel version: its client signatures as callables and as SignatureDef protos.
    `allowlist` (op names) is checked before loading; with a `batcher`, every call is batched."""

    def __init__(
        self,
        version: int,
        path: str,
        batcher: BatchScheduler | None = None,
        allowlist: frozenset[str] | None = None,
    ):
        import tensorflow_text  # noqa: F401  (registers the SentencePiece ops before loading)

        self.version = version
        self.path = path
        self.batcher = batcher
        assert_servable(path, allowlist)
        meta_graph = read_saved_model(path).meta_graphs[0]
        self._loaded = tf.saved_model.load(path)
        self._functions = dict(self._loaded.signatures)
        self.signature_defs = {}
        for name, signature in meta_graph.signature_def.items():
            if name in self._functions and is_dense(signature):
                self.signature_defs[name] = signature
            elif name in self._functions:
                log.warning("version %d: signature %r has non-dense tensors; not served", version, name)

    def signature(self, name: str) -> meta_graph_pb2.SignatureDef:
        """The served SignatureDef called `name` (default serving_default)."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signature_defs:
            raise invalid(f"unknown signature {name!r}")
        return self.signature_defs[name]

    def run(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs signature `name` on validated inputs, merged with concurrent calls when batching."""
        name = name or DEFAULT_SIGNATURE
        if self.batcher is None:
            return self.call_signature(name, inputs)
        if any(value.ndim == 0 for value in inputs.values()):
            raise invalid("Batching input tensors must have at least one dimension")
        if len({value.shape[0] for value in inputs.values()}) != 1:
            raise invalid(
                "Batching input tensors supplied in a given Run() call must have equal size in the 0th "
                "dimension"
            )
        key = (id(self), name, tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items())))
        try:
            return self.batcher.submit(key, inputs, partial(self.call_signature, name))
        except BatchTooLarge as error:
            raise invalid(str(error)) from None
        except QueueFull as error:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        except OutputNotBatched as error:
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, str(error)) from None

    def call_signature(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of signature `name` (the unit that batching merges requests into). An op's error
        message may quote the input bytes (a tf.Example that does not parse), so the client is only told
        that its inputs were rejected, unless the model's own check refused them with a message meant
        for it (`refusal`: a note over the model's cap). When the bytes are not UTF-8, TensorFlow
        raises UnicodeDecodeError in place of the op's error: that too is a rejected input."""
        try:
            outputs = self._functions[name](**{key: tf.constant(value) for key, value in inputs.items()})
        except tf.errors.InvalidArgumentError as error:
            raise invalid(refusal(error.message) or f"signature {name!r} rejected the inputs") from None
        except UnicodeDecodeError:
            raise invalid(f"signature {name!r} rejected the inputs") from None
        return {key: value.numpy() for key, value in outputs.items()}

    def predict(self, request: predict_pb2.PredictRequest, limits: Limits) -> predict_pb2.PredictResponse:
        """A Predict request answered by this version (inputs checked against the SignatureDef)."""
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signature(name)
        missing = sorted(set(signature.inputs) - set(request.inputs))
        if missing:
            raise invalid(f"missing input(s) {missing} for {name!r}")
        extra = sorted(set(request.inputs) - set(signature.inputs))
        if extra:
            raise invalid(f"unknown input(s) {extra} for {name!r}")
        wanted = list(request.output_filter) or sorted(signature.outputs)
        unknown = sorted(set(wanted) - set(signature.outputs))
        if unknown:
            raise invalid(f"output_filter names unknown output(s) {unknown}")
        inputs = {
            key: decode_input(key, request.inputs[key], spec, limits)
            for key, spec in signature.inputs.items()
        }
        outputs = self.run(name, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.signature_name = name
        response.model_spec.version.value = self.version
        for key in wanted:
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    def classify(
        self, request: classification_pb2.ClassificationRequest, limits: Limits
    ) -> classification_pb2.ClassificationResponse:
        """A Classify request answered by a signature marked with TF Serving's Classify method name.
        Every example must hold each text feature (`limits.text_inputs`): a missing note is refused,
        never scored as an empty one."""
        name = request.model_spec.signature_name or self._classify_signature()
        signature = self.signature(name)
        if signature.method_name != tf.saved_model.CLASSIFY_METHOD_NAME:
            raise invalid(f"signature {name!r} is not a Classify signature")
        kind = request.input.WhichOneof("kind")
        if kind is None:
            raise invalid("Classify input holds no examples")
        examples = list(getattr(request.input, kind).examples)
        check_batch(len(examples), "Classify input", limits)
        serialized = []
        for index, example in enumerate(examples):
            if kind == "example_list_with_context":
                merged = type(example)()
                merged.CopyFrom(request.input.example_list_with_context.context)
                merged.MergeFrom(example)
                example = merged
            features = example.features.feature
            for key in sorted(limits.text_inputs):
                if key not in features or not features[key].bytes_list.value:
                    raise invalid(f"example {index}: feature {key!r} is missing (it must hold the note text)")
                check_text(list(features[key].bytes_list.value), f"example {index} {key!r}", limits)
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
            if signature.method_name == tf.saved_model.CLASSIFY_METHOD_NAME
        )
        if not marked:
            raise invalid("the model has no Classify signature")
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


#: An assertion in the model that refuses a client's input says so with this prefix
#: (`components/trainer/finetune.py`, REJECTED); its message names limits, never input text.
_REFUSAL = re.compile(r"assertion failed: \[(rejected: [^\]\n]*)\]")


def refusal(message: str) -> str | None:
    """The model's own message to the client in an op error, or None when the error has none."""
    found = _REFUSAL.search(message or "")
    return found.group(1) if found else None
