"""The TFX component: parameters recorded as sorted JSON, outputs typed, bad settings refused early."""

from __future__ import annotations

import dataclasses
import json

import pytest
from tfx.dsl.components.base import base_beam_executor, executor_spec
from tfx.types import standard_artifacts

from components.clinical_example_gen import executor, readers
from components.clinical_example_gen.artifacts import IngestReport
from components.clinical_example_gen.component import ClinicalExampleGen


def test_parameters_travel_as_sorted_json_with_defaults() -> None:
    component = ClinicalExampleGen("corpus/", "csv", dataclasses.asdict(readers.MTSAMPLES_CSV))
    props = component.exec_properties
    assert props["input_base"] == "corpus/" and props["input_format"] == "csv"
    assert json.loads(props["splits"]) == {"train": 8, "eval": 1, "test": 1}
    assert props["splits"] == json.dumps({"eval": 1, "test": 1, "train": 8})
    assert json.loads(props["reader_config"])["text_column"] == "transcription"
    assert props["max_note_bytes"] == readers.DEFAULT_MAX_NOTE_BYTES
    assert props["scrubber_config"] == "{}"
    assert component.outputs["examples"].type is standard_artifacts.Examples
    assert component.outputs["report"].type is IngestReport
    assert IngestReport.TYPE_NAME == "clinical_albert.ClinicalIngestReport"


def test_it_is_a_beam_component_whose_executor_takes_pipeline_args() -> None:
    component = ClinicalExampleGen("notes/", "text_dir").with_beam_pipeline_args(["--direct_num_workers=2"])
    assert isinstance(component.executor_spec, executor_spec.BeamExecutorSpec)
    assert component.executor_spec.executor_class is executor.Executor
    assert issubclass(executor.Executor, base_beam_executor.BaseBeamExecutor)
    assert "--direct_num_workers=2" in component.executor_spec.beam_pipeline_args


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_format": "xml"}, "input_format"),
        ({"input_format": "csv", "reader_config": {"text_column": "t"}}, "id_column"),
        ({"input_format": "jsonl", "splits": {"train": -1}}, "splits"),
        ({"input_format": "jsonl", "scrubber_config": {"emails": False, "nmaes": True}}, "ScrubberConfig"),
        ({"input_format": "fhir", "max_note_bytes": 0}, "max_note_bytes"),
        ({"input_format": "text_dir", "reader_config": {"group_pattern": "("}}, "group_pattern"),
    ],
)
def test_bad_settings_fail_when_the_pipeline_is_built(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClinicalExampleGen("corpus/", **kwargs)
