"""A driver that fingerprints the corpus before the cache is consulted.

TFX caches an execution by its inputs and parameters. This component has no input artifacts (it
reads `input_base`), so without a fingerprint a scheduled run would be served yesterday's examples
after new notes arrived. The driver lists the corpus files and records their names, sizes and
modification times as the `input_fingerprint` parameter: a changed corpus is a new cache key.

It serves both of TFX's launchers: the IR one (LocalDagRunner) calls `run`, the legacy one (Airflow)
calls `resolve_exec_properties`. The Kubeflow V2 launcher runs no custom drivers; there the
orchestrator's own caching applies.
"""

from __future__ import annotations

import hashlib
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_driver
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.proto.orchestration import driver_output_pb2

from components.clinical_example_gen import readers

INPUT_FINGERPRINT = "input_fingerprint"


def input_fingerprint(input_base: str, input_format: str) -> str:
    """sha256 over each input file's name, size and modification time (contents are not read)."""
    digest = hashlib.sha256()
    files = readers.list_input_files(input_base, input_format)
    for path, name in files:
        stat = tf.io.gfile.stat(path)
        digest.update(f"{name}\0{stat.length}\0{stat.mtime_nsec}\n".encode())
    return f"{len(files)} files, sha256 {digest.hexdigest()}"


class InputFingerprintDriver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
    def __init__(self, metadata_handle):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        ir_base_driver.BaseDriver.__init__(self, metadata_handle)

    def resolve_exec_properties(self, exec_properties: dict[str, Any], pipeline_info, component_info):
        exec_properties[INPUT_FINGERPRINT] = input_fingerprint(
            exec_properties["input_base"], exec_properties["input_format"]
        )
        return exec_properties

    def run(self, execution_info) -> driver_output_pb2.DriverOutput:
        properties = execution_info.exec_properties
        result = driver_output_pb2.DriverOutput()
        result.exec_properties[INPUT_FINGERPRINT].string_value = input_fingerprint(
            properties["input_base"], properties["input_format"]
        )
        return result
