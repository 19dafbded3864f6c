"""TFX's Pusher, except that it pushes the model's client copy (`components/model_layout.py`) and that a
model identical to the newest version being served is not copied again.

A scheduled pipeline that runs with nothing changed gets its Trainers from the cache, but the
Evaluator re-runs once against the model it blessed last time (the Resolver's baseline is new), and
TFX's Pusher would then copy the same model into a new version folder on every run. Here the
candidate's `saved_model.pb` and variables are compared with the newest version first; when they are
the same, the artifact records that version and nothing is copied.

With a `model_card` input, a model it pushes gets its card (components/model_card/) in the new version's
`assets.extra/model_card/`, with the pushed version recorded in it. TF Serving reads nothing under
assets.extra but its warmup requests, and the card is written after the model, so serving and the
version checks (serving/versions.py) see the version as before. A card made for another model (its
sha256 is not the pushed model's) is not copied.
"""

from __future__ import annotations

import hashlib
import json
import os

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import model_layout
from components.model_card import card as card_lib

MODEL_CARD_KEY = "model_card"
#: Where a pushed version holds its model card.
CARD_DIR = os.path.join("assets.extra", "model_card")


def model_digest(model_dir: str) -> str:
    """sha256 over saved_model.pb and every file under variables/ (by relative name and bytes)."""
    digest = hashlib.sha256()
    names = ["saved_model.pb"]
    variables = os.path.join(model_dir, "variables")
    if fileio.exists(variables):
        names += sorted(os.path.join("variables", name) for name in fileio.listdir(variables))
    for name in names:
        digest.update(name.encode() + b"\0")
        with fileio.open(os.path.join(model_dir, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def newest_version(base_directory: str) -> str | None:
    if not fileio.exists(base_directory):
        return None
    versions = [v.rstrip("/") for v in fileio.listdir(base_directory) if v.rstrip("/").isdigit()]
    return max(versions, key=int) if versions else None


class Executor(pusher_executor.Executor):
    def GetModelPath(self, input_dict) -> str:
        """The model's client copy (`components/model_layout.py`), not the Evaluator's full one."""
        models = input_dict.get(standard_component_specs.MODEL_KEY)
        if models:
            return model_layout.client_model_path(artifact_utils.get_single_instance(models).uri)
        return super().GetModelPath(input_dict)

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") == "filesystem" and self.CheckBlessing(input_dict):
            base = destination.filesystem.base_directory
            version = newest_version(base)
            model_path = self.GetModelPath(input_dict)
            if version and model_digest(os.path.join(base, version)) == model_digest(model_path):
                model_push = artifact_utils.get_single_instance(
                    output_dict[standard_component_specs.PUSHED_MODEL_KEY]
                )
                self._MarkPushed(
                    model_push, pushed_destination=os.path.join(base, version), pushed_version=version
                )
                logging.info("The model is already served as version %s; nothing copied.", version)
                return
        super().Do(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        cards = input_dict.get(MODEL_CARD_KEY)
        if cards and model_push.get_int_custom_property("pushed"):
            version_dir = model_push.get_string_custom_property("pushed_destination")
            version = model_push.get_string_custom_property("pushed_version")
            if push_card(cards[0].uri, version_dir, version):
                model_push.set_string_custom_property(MODEL_CARD_KEY, os.path.join(version_dir, CARD_DIR))


def push_card(card_uri: str, version_dir: str, version: str) -> bool:
    """Copies the card at `card_uri` into `<version_dir>/assets.extra/model_card/` with `push`
    ({"version", "destination"}) added to its JSON and Markdown; True when copied. Not copied: a card
    of another model, or into a version that already has one."""
    target = os.path.join(version_dir, CARD_DIR)
    if fileio.exists(os.path.join(target, card_lib.CARD_FILE)):
        logging.info("version %s already holds a model card; left as it is", version)
        return False
    with fileio.open(os.path.join(card_uri, card_lib.CARD_FILE), "r") as f:
        card = json.loads(f.read())
    pushed = model_digest(version_dir)
    if card["model"].get("sha256") != pushed:
        logging.error("the model card describes model %s, not the pushed one (%s): not copied",
                      card["model"].get("sha256"), pushed)  # fmt: skip
        return False
    report = os.path.join(card_uri, card_lib.REPORT_DIR)
    if fileio.exists(report):
        io_utils.copy_dir(report, os.path.join(target, card_lib.REPORT_DIR))
    card["push"] = {"version": version, "destination": version_dir}
    card_lib.write_files(card, target)
    logging.info("model card pushed with version %s", version)
    return True
