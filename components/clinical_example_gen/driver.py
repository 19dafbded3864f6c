"""A driver that resolves the corpus spans and fingerprints them before the cache is consulted.

TFX caches an execution by its inputs and parameters. This component has no input artifacts (it
reads `input_base`), so without a fingerprint a scheduled run would be served yesterday's examples
after new notes arrived. The driver resolves which spans the run ingests (spans.py; a path without
`{SPAN}` is its own one span), lists their files and records their names, sizes and modification
times as the `input_fingerprint` parameter: a new span or a changed file is a new cache key, while a
file outside the ingested spans changes nothing. The resolution itself is recorded as the
`resolved_spans` parameter, so the executor reads exactly the spans that were fingerprinted.

It serves both of TFX's launchers: the IR one (LocalDagRunner) calls `run`, the legacy one (Airflow)
calls `resolve_exec_properties`. The Kubeflow V2 launcher runs no custom drivers; there the
orchestrator's own caching applies, and the executor resolves the spans itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
from tfx.dsl.components.base import base_driver
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.proto.orchestration import driver_output_pb2

from components.clinical_example_gen import spans as spans_lib

INPUT_FINGERPRINT = "input_fingerprint"


def files_fingerprint(files: Sequence[spans_lib.SpanFile]) -> str:
    """sha256 over each file's span, name, size and modification time (contents are not read).

    Files without a span hash as they did before spans existed, so a corpus path without `{SPAN}`
    keeps its fingerprint.
    """
    digest = hashlib.sha256()
    spans = sorted({file.span for file in files if file.span is not None})
    for file in files:
        stat = tf.io.gfile.stat(file.path)
        where = "" if file.span is None else f"{file.span}\0"
        digest.update(f"{where}{file.name}\0{stat.length}\0{stat.mtime_nsec}\n".encode())
    in_spans = f" in spans {spans}" if spans else ""
    return f"{len(files)} files{in_spans}, sha256 {digest.hexdigest()}"


def resolve_inputs(
    input_base: str, input_format: str, spans: int = 1
) -> tuple[tuple[spans_lib.ResolvedSpan, ...], str]:
    """The spans a run ingests and their fingerprint (see `files_fingerprint`)."""
    resolved = spans_lib.resolve(input_base, spans)
    return resolved, files_fingerprint(spans_lib.list_files(resolved, input_format))


def input_fingerprint(input_base: str, input_format: str, spans: int = 1) -> str:
    """The fingerprint of the files of the newest `spans` spans of `input_base` (all its files when
    it holds no `{SPAN}`)."""
    return resolve_inputs(input_base, input_format, spans)[1]


def _driver_properties(exec_properties: Mapping[str, Any]) -> dict[str, str]:
    spans = exec_properties.get(spans_lib.SPANS)
    resolved, fingerprint = resolve_inputs(
        exec_properties["input_base"], exec_properties["input_format"], 1 if spans is None else int(spans)
    )
    return {INPUT_FINGERPRINT: fingerprint, spans_lib.RESOLVED_SPANS: spans_lib.to_json(resolved)}


class InputFingerprintDriver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
    def __init__(self, metadata_handle):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        ir_base_driver.BaseDriver.__init__(self, metadata_handle)

    def resolve_exec_properties(self, exec_properties: dict[str, Any], pipeline_info, component_info):
        exec_properties.update(_driver_properties(exec_properties))
        return exec_properties

    def run(self, execution_info) -> driver_output_pb2.DriverOutput:
        result = driver_output_pb2.DriverOutput()
        for key, value in _driver_properties(execution_info.exec_properties).items():
            result.exec_properties[key].string_value = value
        return result
