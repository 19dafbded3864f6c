"""What a scheduled run builds on: the vocabulary, the pretrained model and the blessed model of earlier
runs, found in ML Metadata.

A run that builds on earlier work must still be cached when nothing changed. TFX caches an execution
by its input artifacts, so the artifact a run starts from must not be one that the same data produced:
an unchanged second run would otherwise start from the first run's output, see a new input, and train
again. The rule is therefore "the newest artifact made from other examples": a run on new data
continues from the last model trained on older data, and a rerun on the same data resolves exactly
what the first run on that data resolved (nothing, or the same artifact), so it is served from the
cache.

`BuildOn` is the ResolverStrategy for the local and Airflow runners. Its resolver takes two channels:
`examples`, this run's examples (an upstream output; returned unchanged), and `candidates`, the earlier
outputs of one node (a `tfx.dsl.Channel` with `producer_component_id` and `output_key`). Which
examples an artifact was made from comes from lineage: the `examples` input of the execution that
produced it. Kubeflow Pipelines v2 compiles only TFX's two stock strategies, so there the pipeline
resolves the newest vocabulary with `LatestArtifactStrategy` and trains the models afresh
(`pipeline.create_pipeline(..., portable=True)`).
"""

from __future__ import annotations

from typing import Any

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

from components.sentencepiece_tokenizer.executor import vocabulary_version, was_reused

EXAMPLES_KEY = "examples"
CANDIDATES_KEY = "candidates"


def _input_ids(store: mlmd.MetadataStore, artifact_id: int, key: str) -> set[int]:
    """The ids of the `key` inputs of every execution that output `artifact_id` (a cached execution
    outputs the artifact again, with the same inputs)."""
    producers = {
        e.execution_id
        for e in store.get_events_by_artifact_ids([artifact_id])
        if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    }
    if not producers:
        return set()
    return {
        e.artifact_id
        for e in store.get_events_by_execution_ids(list(producers))
        if e.type in (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
        and e.path.steps
        and e.path.steps[0].key == key
    }


def _blessed_model_ids(store: mlmd.MetadataStore) -> set[int]:
    """Models that an Evaluator blessed (TFX's ModelBlessing: `blessed` 1, `current_model_id`)."""
    blessed = set()
    for blessing in store.get_artifacts_by_type("ModelBlessing"):
        properties = blessing.custom_properties
        if (
            properties.get("blessed")
            and properties["blessed"].int_value == 1
            and "current_model_id" in properties
        ):
            blessed.add(properties["current_model_id"].int_value)
    return blessed


class BuildOn(resolver.ResolverStrategy):
    """The newest candidate made from examples other than this run's.

    Args:
    blessed_only: only models that an Evaluator blessed (fine-tuning's warm start).
    vocabulary_version: only tokenizers of this version that were trained, not reused (the vocabulary).
    """

    def __init__(self, blessed_only: bool = False, vocabulary_version: int = 0) -> None:
        self._blessed_only = blessed_only
        self._vocabulary_version = vocabulary_version

    def resolve_artifacts(
        self, store: mlmd.MetadataStore, input_dict: dict[str, list[types.Artifact]]
    ) -> dict[str, list[types.Artifact]] | None:
        current = input_dict.get(EXAMPLES_KEY, [])
        current_ids = {a.id for a in current}
        candidates = list(input_dict.get(CANDIDATES_KEY, []))
        if self._vocabulary_version:
            candidates = [
                a
                for a in candidates
                if vocabulary_version(a) == self._vocabulary_version and not was_reused(a)
            ]
        if self._blessed_only:
            blessed = _blessed_model_ids(store)
            candidates = [a for a in candidates if a.id in blessed]
        chosen: list[Any] = []
        for artifact in sorted(candidates, key=lambda a: a.id, reverse=True):
            if not _input_ids(store, artifact.id, EXAMPLES_KEY) & current_ids:
                chosen = [artifact]
                break
        return {EXAMPLES_KEY: current, CANDIDATES_KEY: chosen}
