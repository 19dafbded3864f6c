"""The gRPC services of the local model server: TF Serving's PredictionService and ModelService.

Each request's model spec is resolved against the served models; refusals carry their gRPC code and a
message naming the problem, anything unexpected becomes INTERNAL naming only the error type.
`HandleReloadConfigRequest` lets a client choose what the server loads, so it answers
PERMISSION_DENIED unless the server was started with reload enabled; a config naming a model that
cannot load is refused with FAILED_PRECONDITION, each such model's load error in the message, and
nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.models_config import ModelEntry, models_from_config
from serving.requests import Limits, RequestError, invalid
from serving.servable import ServableVersion
from serving.versions import ModelVersions

log = logging.getLogger(__name__)


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


class Handlers(
    prediction_service_pb2_grpc.PredictionServiceServicer, model_service_pb2_grpc.ModelServiceServicer
):
    """The gRPC methods, resolving each request's model spec against the served models. `reload` is
    called with a ReloadConfigRequest's models only when `allow_reload` is set; it returns, for a
    refused config, why each model could not load."""

    def __init__(
        self,
        models: dict[str, ModelVersions],
        limits: Limits,
        reload: Callable[[list[ModelEntry]], dict[str, str]],
        allow_reload: bool = False,
    ):
        self.models = models
        self.limits = limits
        self._reload = reload
        self.allow_reload = allow_reload

    def _model(self, spec) -> ModelVersions:
        if spec.name not in self.models:
            raise RequestError(grpc.StatusCode.NOT_FOUND, f"model {spec.name!r} is not served")
        if spec.version_label:
            raise invalid("version labels are not supported")
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
            raise invalid("metadata_field must be ['signature_def']")
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
        if not self.allow_reload:
            raise RequestError(
                grpc.StatusCode.PERMISSION_DENIED,
                "config reload is disabled on this server (start it with --enable_reload_config)",
            )
        try:
            entries = models_from_config(request.config, origin="ReloadConfigRequest")
        except ValueError as error:
            raise invalid(str(error)) from None
        refused = self._reload(entries)
        if refused:
            reasons = "; ".join(f"model {name!r}: {why}" for name, why in sorted(refused.items()))
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, f"config not applied: {reasons}")
        return model_management_pb2.ReloadConfigResponse()
