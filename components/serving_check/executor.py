"""Runs `check.py` on the candidate's client copy (what the Pusher pushes; `components/model_layout.py`)
in a child process and writes an InfraBlessing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import logging
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components import model_layout

MODEL_KEY = "model"
BLESSING_KEY = "blessing"
TIMEOUT_KEY = "timeout_seconds"


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        export_dir = model_layout.client_model_path(model.uri)
        result = subprocess.run(
            [sys.executable, "-m", "components.serving_check.check", export_dir],
            capture_output=True,
            text=True,
            timeout=int(exec_properties.get(TIMEOUT_KEY) or 600),
        )
        try:
            summary = json.loads(result.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            summary = {"problems": [f"the check process failed (exit {result.returncode})"]}
            logging.error("serving check failed:\n%s", result.stderr[-5000:])
        blessed = result.returncode == 0 and not summary.get("problems")
        io_utils.write_string_file(
            os.path.join(blessing.uri, "INFRA_BLESSED" if blessed else "INFRA_NOT_BLESSED"),
            json.dumps(summary),
        )
        blessing.set_int_custom_property("blessed", int(blessed))
        logging.info("serving check: %s", "blessed" if blessed else f"not blessed: {summary.get('problems')}")
