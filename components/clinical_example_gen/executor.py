"""The clinical ExampleGen's executor: a Beam pipeline from corpus files to split tf.Examples and a report.

Files -> records (readers) -> processed notes (text_steps) -> one note per distinct text (dedupe) ->
splits by group hash -> gzip TFRecords under `Split-<name>/`. Rejects from any stage go to
`rejects.jsonl`; records that are not notes (FHIR resources beside the documents) are only counted.
Every stage also emits counters; after the pipeline the executor sums them into
`summary.json` and refuses to finish if any input record is unaccounted for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.clinical_example_gen import readers
from components.clinical_example_gen import report as report_lib
from components.clinical_example_gen.dedupe import merge_duplicates
from components.clinical_example_gen.examples import to_example
from components.clinical_example_gen.records import NoteRecord, ProcessedNote, Reject, Skipped
from components.clinical_example_gen.split import DEFAULT_SPLITS, Splits, parse_splits, split_index
from components.clinical_example_gen.text_steps import TextSteps
from components.clinical_text import phi_tagger

EXAMPLES_KEY = "examples"
REPORT_KEY = "report"

INPUT_BASE = "input_base"
INPUT_FORMAT = "input_format"
READER_CONFIG = "reader_config"
SPLITS = "splits"
MAX_NOTE_BYTES = "max_note_bytes"
SCRUBBER_CONFIG = "scrubber_config"

_EXAMPLES_FILE_PREFIX = "data_tfrecord"
_COUNTS_DIR = ".counts"
_REJECTS_TAG = "rejects"


def _json_param(exec_properties: Mapping[str, Any], key: str, default: Any) -> Any:
    raw = exec_properties.get(key)
    if raw in (None, ""):
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"exec property {key!r} is not valid JSON: {error.msg}") from None


@dataclasses.dataclass(frozen=True)
class IngestParams:
    """The execution parameters, parsed and validated."""

    input_base: str
    input_format: str
    reader_config: Mapping[str, Any]
    splits: Splits
    max_note_bytes: int
    scrubber_config: Mapping[str, Any]

    @classmethod
    def from_exec_properties(cls, exec_properties: Mapping[str, Any]) -> IngestParams:
        max_note_bytes = exec_properties.get(MAX_NOTE_BYTES)
        return cls(
            input_base=exec_properties[INPUT_BASE],
            input_format=exec_properties[INPUT_FORMAT],
            reader_config=_json_param(exec_properties, READER_CONFIG, {}),
            splits=parse_splits(_json_param(exec_properties, SPLITS, DEFAULT_SPLITS)),
            max_note_bytes=readers.DEFAULT_MAX_NOTE_BYTES if max_note_bytes is None else int(max_note_bytes),
            scrubber_config=_json_param(exec_properties, SCRUBBER_CONFIG, {}),
        )


class _ProcessNotes(beam.DoFn):
    """Runs the text steps on records; passes readers' rejects and empty results to the rejects output."""

    def __init__(self, scrubber_config: Mapping[str, Any]) -> None:
        self._scrubber_config = dict(scrubber_config)
        self._steps: TextSteps | None = None

    def setup(self) -> None:
        self._steps = TextSteps(self._scrubber_config)

    def process(self, item: NoteRecord | Reject | Skipped) -> Iterator[Any]:
        if isinstance(item, Skipped):
            return
        result = item if isinstance(item, Reject) else self._steps(item)
        if isinstance(result, Reject):
            yield beam.pvalue.TaggedOutput(_REJECTS_TAG, result)
        else:
            yield result


def _text_key(note: ProcessedNote) -> bytes:
    """The dedupe key: sha256 of the processed text, which shuffles 32 bytes per note instead of its
    text a second time; equal digests mean equal texts for any corpus that exists."""
    return hashlib.sha256(note.text.encode("utf-8")).digest()


def _phi_counters(note: ProcessedNote) -> Iterator[tuple[str, int]]:
    for token, count in note.phi_counts.items():
        yield report_lib.PHI_PREFIX + token, count


def _read_counters(name: str, item: NoteRecord | Reject | Skipped) -> Iterator[tuple[str, int]]:
    """Input records (a `Skipped` stands for `count` of them), and what they became, per file and per
    record type where the format names one."""
    if isinstance(item, Skipped):
        outcome, kind, amount = "skipped", item.record_type, item.count
        yield report_lib.SKIPPED_PREFIX + kind, amount
    elif isinstance(item, Reject):
        outcome, kind, amount = "rejected", item.record_type, 1
    else:
        outcome, kind, amount = "notes", item.metadata.get("resource_type", ""), 1
    yield report_lib.INPUT_RECORDS, amount
    yield f"{report_lib.FILE_PREFIX}{outcome}/{name}", amount
    if kind:
        yield f"{report_lib.TYPE_PREFIX}{kind}/{outcome}", amount


def _merged_counters(merged: tuple[ProcessedNote, int]) -> Iterator[tuple[str, int]]:
    yield report_lib.KEPT_EXAMPLES, 1
    yield report_lib.DUPLICATES_COLLAPSED, merged[1]


def _ingest(
    pipeline: beam.Pipeline,
    files: Sequence[tuple[str, str]],
    params: IngestParams,
    split_uris: Sequence[str],
    report_uri: str,
    counts_prefix: str,
) -> None:
    """Builds the pipeline: examples into `split_uris` (one per split), rejects and counters beside."""
    reader = readers.make_reader(params.input_format, params.reader_config, params.max_note_bytes)
    named_records = (
        pipeline
        | "ListFiles" >> beam.Create(list(files))
        | "SpreadFiles" >> beam.Reshuffle()
        | "Read" >> beam.FlatMapTuple(lambda path, name: ((name, item) for item in reader(path, name)))
    )
    records = named_records | "DropNames" >> beam.MapTuple(lambda _, item: item)
    processed = records | "Process" >> beam.ParDo(_ProcessNotes(params.scrubber_config)).with_outputs(
        _REJECTS_TAG, main="notes"
    )
    rejects = processed[_REJECTS_TAG]
    merged = (
        processed.notes
        | "KeyByText" >> beam.Map(lambda note: (_text_key(note), note))
        | "GroupByText" >> beam.GroupByKey()
        | "MergeDuplicates" >> beam.MapTuple(lambda _, notes: merge_duplicates(notes))
    )
    kept = merged | "Kept" >> beam.Map(lambda pair: pair[0])
    splits = params.splits
    parts = kept | "Split" >> beam.Partition(lambda note, _: split_index(note.group_id, splits), len(splits))

    counters = [
        named_records | "CountInput" >> beam.FlatMapTuple(_read_counters),
        rejects | "CountRejects" >> beam.Map(lambda reject: (report_lib.REJECTED_PREFIX + reject.reason, 1)),
        merged | "CountMerged" >> beam.FlatMap(_merged_counters),
        kept | "CountPhi" >> beam.FlatMap(_phi_counters),
    ]
    for index, ((name, _), uri) in enumerate(zip(splits, split_uris, strict=True)):
        part = parts[index]
        _ = (
            part
            | f"Serialize[{name}]" >> beam.Map(lambda note: to_example(note).SerializeToString())
            | f"Write[{name}]"
            >> beam.io.WriteToTFRecord(os.path.join(uri, _EXAMPLES_FILE_PREFIX), file_name_suffix=".gz")
        )
        counters.append(
            part | f"Count[{name}]" >> beam.Map(lambda _, key: (key, 1), report_lib.SPLIT_PREFIX + name)
        )

    _ = (
        rejects
        | "RejectLines" >> beam.Map(lambda reject: json.dumps(reject.to_json(), sort_keys=True))
        | "WriteRejects"
        >> beam.io.WriteToText(
            os.path.join(report_uri, report_lib.REJECTS_FILE), shard_name_template="", num_shards=1
        )
    )
    _ = (
        counters
        | "AllCounters" >> beam.Flatten()
        | "SumCounters" >> beam.CombinePerKey(sum)
        | "CounterLines" >> beam.MapTuple(lambda key, value: json.dumps([key, value]))
        | "WriteCounters" >> beam.io.WriteToText(counts_prefix, shard_name_template="", num_shards=1)
    )


def _read_counts(path: str) -> dict[str, int]:
    with fileio.open(path, "r") as lines:
        return dict(json.loads(line) for line in lines if line.strip())


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads a clinical corpus into split tf.Examples and an ingest report."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Runs the ingest pipeline, then writes summary.json once the accounting holds.

        Raises ValueError for bad parameters, FileNotFoundError for a missing input_base or
        de-identification tagger export, and report.AccountingError if an input record was lost.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        params = IngestParams.from_exec_properties(exec_properties)
        tagger_dir = params.scrubber_config.get("tagger_export_dir")
        if tagger_dir:
            # Before Beam starts: each worker loads it in setup, where a missing folder reads worse.
            phi_tagger.check_export_dir(tagger_dir)
        files = readers.list_input_files(params.input_base, params.input_format)
        if not files:
            suffixes = ", ".join(readers.FILE_SUFFIXES[params.input_format])
            raise FileNotFoundError(f"no {suffixes} files under input_base {params.input_base}")
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        ingest_report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        split_names = [name for name, _ in params.splits]
        examples.split_names = artifact_utils.encode_split_names(split_names)
        split_uris = [artifact_utils.get_split_uri([examples], name) for name in split_names]
        counts_dir = os.path.join(ingest_report.uri, _COUNTS_DIR)
        counts_path = os.path.join(counts_dir, "counts.jsonl")

        with self._make_beam_pipeline() as pipeline:
            _ingest(pipeline, files, params, split_uris, ingest_report.uri, counts_path)

        counts = _read_counts(counts_path)
        summary = report_lib.build_summary(counts, split_names)
        file_lines = report_lib.file_lines(counts)
        fileio.rmtree(counts_dir)
        report_lib.check_accounting(summary, file_lines)
        with fileio.open(os.path.join(ingest_report.uri, report_lib.FILES_FILE), "w") as out:
            out.write("".join(json.dumps(line, sort_keys=True) + "\n" for line in file_lines))
        summary = {"input_format": params.input_format, "input_files": len(files), **summary}
        with fileio.open(os.path.join(ingest_report.uri, report_lib.SUMMARY_FILE), "w") as out:
            out.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")

        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        for key in (
            report_lib.INPUT_RECORDS,
            report_lib.KEPT_EXAMPLES,
            report_lib.DUPLICATES_COLLAPSED,
            report_lib.REJECTED,
            report_lib.SKIPPED,
        ):
            ingest_report.set_int_custom_property(key, summary[key])
