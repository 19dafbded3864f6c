"""The clinical ExampleGen as a TFX component: its spec (parameters and outputs) and its constructor.

Configuration objects travel as sorted JSON strings, so they are recorded in ML Metadata and change
the cache key when they change. The constructor validates every parameter (format, reader config,
splits, scrubber config) so that a typo fails when the pipeline is built, not hours into a run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.clinical_example_gen import executor, readers
from components.clinical_example_gen import spans as spans_lib
from components.clinical_example_gen.artifacts import IngestReport
from components.clinical_example_gen.driver import INPUT_FINGERPRINT, InputFingerprintDriver
from components.clinical_example_gen.split import DEFAULT_SPLITS, parse_splits
from components.clinical_text.scrub import ScrubberConfig


class ClinicalExampleGenSpec(types.ComponentSpec):
    """Parameters and outputs of ClinicalExampleGen; it has no input channels (it reads input_base)."""

    PARAMETERS: ClassVar[dict[str, ExecutionParameter]] = {
        executor.INPUT_BASE: ExecutionParameter(type=str),
        executor.INPUT_FORMAT: ExecutionParameter(type=str),
        executor.READER_CONFIG: ExecutionParameter(type=str, optional=True),
        executor.SPLITS: ExecutionParameter(type=str, optional=True),
        executor.MAX_NOTE_BYTES: ExecutionParameter(type=int, optional=True),
        executor.SCRUBBER_CONFIG: ExecutionParameter(type=str, optional=True),
        executor.SPLIT_SOURCE: ExecutionParameter(type=str, optional=True),
        executor.SPANS: ExecutionParameter(type=int, optional=True),
        # Set by the driver at run time: a changed corpus must not be served from the cache, and the
        # executor reads the spans that were fingerprinted (JSON; empty where no driver ran).
        INPUT_FINGERPRINT: ExecutionParameter(type=str, optional=True),
        executor.RESOLVED_SPANS: ExecutionParameter(type=str, optional=True),
    }
    INPUTS: ClassVar[dict[str, ChannelParameter]] = {}
    OUTPUTS: ClassVar[dict[str, ChannelParameter]] = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.REPORT_KEY: ChannelParameter(type=IngestReport),
    }


def _to_json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True)


class ClinicalExampleGen(base_beam_component.BaseBeamComponent):
    """Reads clinical notes (CSV, MIMIC-III NOTEEVENTS, a folder of .txt, JSON Lines, FHIR R4) into
    split tf.Examples, with an ingest report of every rejected record and the counts.

    Outputs: `examples` (standard Examples, one `Split-<name>` folder per split) and `report`
    (ClinicalIngestReport: rejects.jsonl and summary.json). With `{SPAN}` in `input_base`, both record
    the newest span ingested (`span`, `version`) and every one (the `spans` custom property).
    """

    SPEC_CLASS = ClinicalExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = InputFingerprintDriver

    def __init__(
        self,
        input_base: str,
        input_format: str,
        reader_config: Mapping[str, Any] | None = None,
        splits: Mapping[str, int] | None = None,
        max_note_bytes: int = readers.DEFAULT_MAX_NOTE_BYTES,
        scrubber_config: Mapping[str, Any] | None = None,
        split_source: Mapping[str, Any] | None = None,
        spans: int = 1,
    ) -> None:
        """Configures the component; every parameter is validated here.

        Args:
        input_base: a file, or a folder searched recursively for the format's files; or a pattern
            holding `{SPAN}` (and optionally `{VERSION}`), digits in one path segment, the rest a glob:
            `notes/span-{SPAN}/`, `notes-{SPAN}.csv`, `notes/{SPAN}/v{VERSION}/*.csv` (see spans.py).
        input_format: one of `readers.INPUT_FORMATS`.
        reader_config: the format's reader config (see readers.py), e.g.
            `dataclasses.asdict(readers.MTSAMPLES_CSV)` for MTSamples; empty for the format's defaults.
        splits: split name -> integer ratio; default train 8, eval 1, test 1.
        max_note_bytes: notes longer than this in UTF-8 are rejected as oversize.
        scrubber_config: `ScrubberConfig` fields; empty for its defaults.
        split_source: the corpus's official splits, which then replace `splits` (see
            `split.SplitSource`): `{"files": {"train": ["train*"], "eval": ["devel*"], ...}}` matches
            file names relative to input_base; `{"field": {"train": ["train"], "eval": ["dev"], ...}}`
            maps the value each record carries (`split_column` for csv/mimic, `split_key` for jsonl).
            Empty (the default): groups are split by hash. With spans, file names are relative to
            each span's folder.
        spans: with `{SPAN}` in input_base, how many of the newest spans a run ingests (each at its
            newest version); must be 1 without it.
        """
        reader_config = dict(reader_config or {})
        splits = dict(DEFAULT_SPLITS if splits is None else splits)
        scrubber_config = dict(scrubber_config or {})
        split_source = dict(split_source or {})
        readers.make_reader(input_format, reader_config, max_note_bytes)
        spans_lib.check_spans(input_base, spans)
        parse_splits(splits)
        ScrubberConfig.from_dict(scrubber_config)
        executor.check_split_source(split_source, input_format, reader_config)
        spec = ClinicalExampleGenSpec(
            input_base=input_base,
            input_format=input_format,
            reader_config=_to_json(reader_config),
            splits=_to_json(splits),
            max_note_bytes=max_note_bytes,
            scrubber_config=_to_json(scrubber_config),
            split_source=_to_json(split_source),
            spans=spans,
            examples=types.Channel(type=standard_artifacts.Examples),
            report=types.Channel(type=IngestReport),
        )
        super().__init__(spec=spec)
