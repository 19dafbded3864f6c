"""The fine-tuning Trainer's two copies of a model: the Pusher and ServingCheck take the client copy,
and fall back to the serving folder for an artifact that has none."""

from __future__ import annotations

from pathlib import Path

from tfx.types import standard_artifacts, standard_component_specs

from components import model_layout
from components.pusher.executor import Executor as PusherExecutor


def _model(uri: Path, *copies: str) -> standard_artifacts.Model:
    for copy in copies:
        (uri / copy).mkdir(parents=True)
        (uri / copy / "saved_model.pb").write_bytes(b"")
    model = standard_artifacts.Model()
    model.uri = str(uri)
    return model


def test_the_client_copy_sits_beside_the_trainers_serving_folder(tmp_path):
    serving = tmp_path / "model" / "7" / "Format-Serving"
    assert model_layout.client_copy_dir(str(serving)) == str(
        tmp_path / "model" / "7" / "Format-Serving-Clients"
    )
    assert model_layout.client_copy_dir(str(serving) + "/") == model_layout.client_copy_dir(str(serving))


def test_pusher_and_serving_check_take_the_client_copy(tmp_path):
    both = _model(tmp_path / "both", "Format-Serving", model_layout.CLIENT_COPY_DIR)
    assert model_layout.client_model_path(both.uri) == str(tmp_path / "both" / model_layout.CLIENT_COPY_DIR)
    pushed = PusherExecutor().GetModelPath({standard_component_specs.MODEL_KEY: [both]})
    assert pushed == str(tmp_path / "both" / model_layout.CLIENT_COPY_DIR)


def test_an_artifact_without_a_client_copy_falls_back_to_its_serving_folder(tmp_path):
    # A half-written client copy (no saved_model.pb) is not taken either.
    (tmp_path / "old" / model_layout.CLIENT_COPY_DIR).mkdir(parents=True)
    old = _model(tmp_path / "old", "Format-Serving")
    assert model_layout.client_model_path(old.uri) == str(tmp_path / "old" / "Format-Serving")
    pushed = PusherExecutor().GetModelPath({standard_component_specs.MODEL_KEY: [old]})
    assert pushed == str(tmp_path / "old" / "Format-Serving")
