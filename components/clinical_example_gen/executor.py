"""The clinical ExampleGen's executor: a Beam pipeline from corpus files to split tf.Examples and a report.

Files -> records (readers) -> processed notes (text_steps) -> one note per distinct text, or per
distinct pair of texts (dedupe) -> splits by group hash -> gzip TFRecords under `Split-<name>/`.
Rejects from any stage go to `rejects.jsonl`; records that are not notes (FHIR resources beside the
documents) are only counted. Every stage also emits counters; after the pipeline the executor sums
them into `summary.json` and refuses to finish if any input record is unaccounted for.

With a `split_source` (see `split.SplitSource`) the corpus's official splits replace the hash: each
record gets its split as it is read (from its file's name, or from the value its reader read, a record
whose value names no split being rejected), duplicates collapse within a split only, and the summary
reports the texts and groups that the official splits share.

With `{SPAN}` in `input_base` (see spans.py), the files of the spans the driver resolved are read (the
executor resolves them itself where no driver ran, as under Kubeflow V2). Each record travels with its
span number, so the report accounts for every span and each reject names its span; deduplication and
splitting ignore spans (a text in two spans is one example, a group in two spans is in one split). The
Examples artifact records the newest span and its version, as TFX's ExampleGen does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
from absl import logging
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components.clinical_example_gen import readers
from components.clinical_example_gen import report as report_lib
from components.clinical_example_gen import spans as spans_lib
from components.clinical_example_gen import split as split_lib
from components.clinical_example_gen.dedupe import merge_duplicates
from components.clinical_example_gen.examples import to_example
from components.clinical_example_gen.records import UNKNOWN_SPLIT, NoteRecord, ProcessedNote, Reject, Skipped
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
SPLIT_SOURCE = "split_source"
SPANS = spans_lib.SPANS
RESOLVED_SPANS = spans_lib.RESOLVED_SPANS
#: The custom property (JSON list of span, version, path) naming every span an output was made from.
SPANS_PROPERTY = "spans"

#: The reader config key that gives each record its split value, for the formats that can read one.
SPLIT_FIELD_KEYS = {"csv": "split_column", "mimic": "split_column", "jsonl": "split_key"}

_EXAMPLES_FILE_PREFIX = "data_tfrecord"
_COUNTS_DIR = ".counts"
_REJECTS_TAG = "rejects"
#: Longest split value quoted in an `unknown split` reject; a misconfigured column must not copy a note.
_SPLIT_DETAIL_CHARS = 40


def _json_param(exec_properties: Mapping[str, Any], key: str, default: Any) -> Any:
    raw = exec_properties.get(key)
    if raw in (None, ""):
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"exec property {key!r} is not valid JSON: {error.msg}") from None


def check_split_source(
    split_source: Mapping[str, Any], input_format: str, reader_config: Mapping[str, Any]
) -> split_lib.SplitSource:
    """Parses `split_source`; raises ValueError if it is malformed, or if it reads splits from a field
    that the format's reader config does not name."""
    source = split_lib.parse_split_source(split_source)
    if source.mode == split_lib.FIELD:
        key = SPLIT_FIELD_KEYS.get(input_format)
        if key is None:
            formats = sorted(SPLIT_FIELD_KEYS)
            raise ValueError(f"split_source field: the {input_format!r} reader reads no split; use {formats}")
        if not reader_config.get(key):
            raise ValueError(f"split_source field: the {input_format} reader config needs {key!r}")
    return source


@dataclasses.dataclass(frozen=True)
class IngestParams:
    """The execution parameters, parsed and validated."""

    input_base: str
    input_format: str
    reader_config: Mapping[str, Any]
    splits: Splits
    max_note_bytes: int
    scrubber_config: Mapping[str, Any]
    split_source: split_lib.SplitSource
    #: How many of the newest spans to ingest when `input_base` holds `{SPAN}`.
    spans: int = 1

    @property
    def split_names(self) -> tuple[str, ...]:
        """The output splits, sorted: the split source's when it predefines them, else `splits`'."""
        if self.split_source.predefined:
            return self.split_source.names
        return tuple(name for name, _ in self.splits)

    @classmethod
    def from_exec_properties(cls, exec_properties: Mapping[str, Any]) -> IngestParams:
        max_note_bytes = exec_properties.get(MAX_NOTE_BYTES)
        spans = exec_properties.get(SPANS)
        spans = 1 if spans is None else int(spans)
        spans_lib.check_spans(exec_properties[INPUT_BASE], spans)
        input_format = exec_properties[INPUT_FORMAT]
        reader_config = _json_param(exec_properties, READER_CONFIG, {})
        split_source = _json_param(exec_properties, SPLIT_SOURCE, {})
        return cls(
            input_base=exec_properties[INPUT_BASE],
            input_format=input_format,
            reader_config=reader_config,
            splits=parse_splits(_json_param(exec_properties, SPLITS, DEFAULT_SPLITS)),
            max_note_bytes=readers.DEFAULT_MAX_NOTE_BYTES if max_note_bytes is None else int(max_note_bytes),
            scrubber_config=_json_param(exec_properties, SCRUBBER_CONFIG, {}),
            split_source=check_split_source(split_source, input_format, reader_config),
            spans=spans,
        )

    def resolve_spans(self, resolved_spans: str | None) -> tuple[spans_lib.ResolvedSpan, ...]:
        """The spans to read: those the driver resolved (`resolved_spans`, JSON), else resolved now."""
        if resolved_spans:
            return spans_lib.from_json(resolved_spans)
        return spans_lib.resolve(self.input_base, self.spans)


#: A record, note or reject with the number of the span it was read from (None: the corpus has no spans).
Spanned = tuple[int | None, Any]
#: A kept note with its span, and the span of each duplicate collapsed into it.
MergedNote = tuple[int | None, ProcessedNote, tuple[int | None, ...]]


class _ProcessNotes(beam.DoFn):
    """Runs the text steps on (span, record)s; passes readers' rejects and empty results to the rejects
    output, each still with its span."""

    def __init__(self, scrubber_config: Mapping[str, Any]) -> None:
        self._scrubber_config = dict(scrubber_config)
        self._steps: TextSteps | None = None

    def setup(self) -> None:
        self._steps = TextSteps(self._scrubber_config)

    def process(self, element: Spanned) -> Iterator[Any]:
        span, item = element
        if isinstance(item, Skipped):
            return
        result = item if isinstance(item, Reject) else self._steps(item)
        if isinstance(result, Reject):
            yield beam.pvalue.TaggedOutput(_REJECTS_TAG, (span, result))
        else:
            yield span, result


def _with_split(
    item: readers.ReadResult, source: split_lib.SplitSource, file_split: str
) -> readers.ReadResult:
    """A record with its predefined split set: its file's (`file_split`), or its value's under a FIELD
    source, where a value that names no split (or none read) makes the record an `unknown split` reject.
    Without a predefined split, and for what is not a note, `item` itself."""
    if not source.predefined or not isinstance(item, NoteRecord):
        return item
    split = file_split if source.mode == split_lib.FILES else source.split_of_value(item.split)
    if split:
        return dataclasses.replace(item, split=split)
    detail = item.split[:_SPLIT_DETAIL_CHARS] if item.split else "missing"
    kind = item.metadata.get("resource_type", "")
    return Reject(item.locator, UNKNOWN_SPLIT, detail, record_type=kind)


def _text_key(note: ProcessedNote) -> bytes:
    """The dedupe key: sha256 of the processed text, which shuffles 32 bytes per note instead of its
    text a second time; equal digests mean equal texts for any corpus that exists. For a pair, sha256
    of the two texts' digests: pairs collapse only when both texts are equal, and never with a single
    text (whose key stays the digest of its text alone)."""
    digest = hashlib.sha256(note.text.encode("utf-8")).digest()
    if note.text_b is None:
        return digest
    return hashlib.sha256(digest + hashlib.sha256(note.text_b.encode("utf-8")).digest()).digest()


def _split_text_key(note: ProcessedNote) -> tuple[str, bytes]:
    """The dedupe key under predefined splits: a text is collapsed within its split, never across."""
    return note.split, _text_key(note)


def _phi_counters(note: ProcessedNote) -> Iterator[tuple[str, int]]:
    for token, count in note.phi_counts.items():
        yield report_lib.PHI_PREFIX + token, count


def _read_counters(span: int | None, name: str, item: readers.ReadResult) -> Iterator[tuple[str, int]]:
    """Input records (a `Skipped` stands for `count` of them), and what they became, per file and per
    record type where the format names one; per span the input records and the skipped ones."""
    if isinstance(item, Skipped):
        outcome, kind, amount = "skipped", item.record_type, item.count
        yield report_lib.SKIPPED_PREFIX + kind, amount
    elif isinstance(item, Reject):
        outcome, kind, amount = "rejected", item.record_type, 1
    else:
        outcome, kind, amount = "notes", item.metadata.get("resource_type", ""), 1
    yield report_lib.INPUT_RECORDS, amount
    yield report_lib.file_counter(outcome, name, span), amount
    if span is not None:
        yield report_lib.span_counter(span, report_lib.INPUT_RECORDS), amount
        if outcome == "skipped":
            yield report_lib.span_counter(span, report_lib.SKIPPED), amount
    if kind:
        yield f"{report_lib.TYPE_PREFIX}{kind}/{outcome}", amount


def _span_order(span: int | None) -> int:
    return -1 if span is None else span


def _merge(entries: Iterable[Spanned]) -> MergedNote:
    """`merge_duplicates` over notes of one text, keeping track of spans: the kept note's span, the
    note, and the span of each note collapsed into it. Of equal (note_id, group_id)s the newest span's
    note is kept (`merge_duplicates` keeps the first of equals), so the outcome is independent of order."""
    ordered = sorted(entries, key=lambda entry: _span_order(entry[0]), reverse=True)
    kept, _ = merge_duplicates(note for _, note in ordered)
    kept_at = next(
        index
        for index, (_, note) in enumerate(ordered)
        if (note.note_id, note.group_id) == (kept.note_id, kept.group_id)
    )
    collapsed = tuple(span for index, (span, _) in enumerate(ordered) if index != kept_at)
    return ordered[kept_at][0], kept, collapsed


def _merged_counters(merged: MergedNote) -> Iterator[tuple[str, int]]:
    span, _, collapsed = merged
    yield report_lib.KEPT_EXAMPLES, 1
    yield report_lib.DUPLICATES_COLLAPSED, len(collapsed)
    if span is not None:
        yield report_lib.span_counter(span, report_lib.KEPT_EXAMPLES), 1
    for collapsed_span in collapsed:
        if collapsed_span is not None:
            yield report_lib.span_counter(collapsed_span, report_lib.DUPLICATES_COLLAPSED), 1


def _reject_counters(span: int | None, reject: Reject) -> Iterator[tuple[str, int]]:
    yield report_lib.REJECTED_PREFIX + reject.reason, 1
    if span is not None:
        yield report_lib.span_counter(span, report_lib.REJECTED), 1


def _reject_line(span: int | None, reject: Reject) -> str:
    """The rejects.jsonl line of a reject, naming its span when the corpus has spans."""
    line = reject.to_json()
    if span is not None:
        line["span"] = span
    return json.dumps(line, sort_keys=True)


def _shared_across_splits(kept: beam.PCollection) -> list[beam.PCollection]:
    """Counters of the texts and the groups found in more than one predefined split, and the first
    `report.MAX_GROUP_EXAMPLES` such group ids (as `several_splits_group/<id>` counters)."""

    def in_several(key: Any, splits: Any) -> Iterator[Any]:
        if len(set(splits)) > 1:
            yield key

    shared_texts = (
        kept
        | "TextSplits" >> beam.Map(lambda note: (_text_key(note), note.split))
        | "SplitsByText" >> beam.GroupByKey()
        | "SharedTexts" >> beam.FlatMapTuple(in_several)
    )
    shared_groups = (
        kept
        | "GroupSplits" >> beam.Map(lambda note: (note.group_id, note.split))
        | "SplitsByGroup" >> beam.GroupByKey()
        | "SharedGroups" >> beam.FlatMapTuple(in_several)
    )
    return [
        shared_texts | "CountSharedTexts" >> beam.Map(lambda _: (report_lib.TEXTS_IN_SEVERAL_SPLITS, 1)),
        shared_groups | "CountSharedGroups" >> beam.Map(lambda _: (report_lib.GROUPS_IN_SEVERAL_SPLITS, 1)),
        shared_groups
        | "FirstSharedGroups" >> beam.combiners.Top.Smallest(report_lib.MAX_GROUP_EXAMPLES)
        | "NameSharedGroups"
        >> beam.FlatMap(lambda groups: ((report_lib.SEVERAL_SPLITS_GROUP_PREFIX + g, 1) for g in groups)),
    ]


def _ingest(
    pipeline: beam.Pipeline,
    files: Sequence[spans_lib.SpanFile],
    params: IngestParams,
    split_uris: Sequence[str],
    report_uri: str,
    counts_prefix: str,
    file_splits: Mapping[str, str],
) -> None:
    """Builds the pipeline: examples into `split_uris` (one per split of `params.split_names`), rejects
    and counters beside. `file_splits` gives each file's split under a FILES split source."""
    reader = readers.make_reader(params.input_format, params.reader_config, params.max_note_bytes)
    source = params.split_source
    file_splits = dict(file_splits)

    def read(path: str, name: str, span: int | None) -> Iterator[tuple[int | None, str, readers.ReadResult]]:
        file_split = file_splits.get(name, "")
        for item in reader(path, name):
            yield span, name, _with_split(item, source, file_split)

    named_records = (
        pipeline
        | "ListFiles" >> beam.Create([(file.path, file.name, file.span) for file in files])
        | "SpreadFiles" >> beam.Reshuffle()
        | "Read" >> beam.FlatMapTuple(read)
    )
    records = named_records | "DropNames" >> beam.MapTuple(lambda span, _, item: (span, item))
    processed = records | "Process" >> beam.ParDo(_ProcessNotes(params.scrubber_config)).with_outputs(
        _REJECTS_TAG, main="notes"
    )
    rejects = processed[_REJECTS_TAG]
    dedupe_key = _split_text_key if source.predefined else _text_key
    merged = (
        processed.notes
        | "KeyByText" >> beam.Map(lambda entry: (dedupe_key(entry[1]), entry))
        | "GroupByText" >> beam.GroupByKey()
        | "MergeDuplicates" >> beam.MapTuple(lambda _, entries: _merge(entries))
    )
    kept = merged | "Kept" >> beam.Map(lambda merged_note: merged_note[1])
    split_names = params.split_names
    if source.predefined:
        index_of = {name: index for index, name in enumerate(split_names)}
        parts = kept | "Split" >> beam.Partition(lambda note, _: index_of[note.split], len(split_names))
    else:
        splits = params.splits
        parts = kept | "Split" >> beam.Partition(
            lambda note, _: split_index(note.group_id, splits),
            len(splits),
        )

    counters = [
        named_records | "CountInput" >> beam.FlatMapTuple(_read_counters),
        rejects | "CountRejects" >> beam.FlatMapTuple(_reject_counters),
        merged | "CountMerged" >> beam.FlatMap(_merged_counters),
        kept | "CountPhi" >> beam.FlatMap(_phi_counters),
    ]
    if source.predefined:
        counters += _shared_across_splits(kept)
    for index, (name, uri) in enumerate(zip(split_names, split_uris, strict=True)):
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
        | "RejectLines" >> beam.MapTuple(_reject_line)
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
        resolved = params.resolve_spans(exec_properties.get(RESOLVED_SPANS))
        spanned = resolved[-1].span is not None
        files = spans_lib.list_files(resolved, params.input_format)
        if not files:
            suffixes = ", ".join(readers.FILE_SUFFIXES[params.input_format])
            where = f"spans {[span.span for span in resolved]} of " if spanned else ""
            raise FileNotFoundError(f"no {suffixes} files under {where}input_base {params.input_base}")
        if spanned:
            logging.info("ClinicalExampleGen: ingesting spans %s", [span.to_json() for span in resolved])
            if len(resolved) < params.spans:
                logging.warning(
                    "ClinicalExampleGen: %d spans requested, %d found for %s",
                    params.spans,
                    len(resolved),
                    params.input_base,
                )
        split_names = list(params.split_names)
        file_splits = {}
        if params.split_source.mode == split_lib.FILES:
            names = sorted({file.name for file in files})
            file_splits = split_lib.split_files(names, params.split_source)
            if empty := sorted(set(split_names) - set(file_splits.values())):
                logging.warning("split_source files: no input file matches the patterns of splits %s", empty)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        ingest_report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        examples.split_names = artifact_utils.encode_split_names(split_names)
        split_uris = [artifact_utils.get_split_uri([examples], name) for name in split_names]
        counts_dir = os.path.join(ingest_report.uri, _COUNTS_DIR)
        counts_path = os.path.join(counts_dir, "counts.jsonl")

        with self._make_beam_pipeline() as pipeline:
            _ingest(pipeline, files, params, split_uris, ingest_report.uri, counts_path, file_splits)

        counts = _read_counts(counts_path)
        summary = report_lib.build_summary(
            counts,
            split_names,
            params.split_source.predefined,
            spans=[span.to_json() for span in resolved] if spanned else None,
            spans_requested=params.spans if spanned else None,
        )
        if shared := summary.get(report_lib.GROUPS_IN_SEVERAL_SPLITS):
            logging.warning(
                "%d groups (group_id) are found in more than one predefined split; "
                "examples under %s in summary.json",
                shared,
                report_lib.GROUPS_IN_SEVERAL_SPLITS_EXAMPLES,
            )
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
        _record_spans(examples, ingest_report, resolved)


def _record_spans(
    examples: types.Artifact, ingest_report: types.Artifact, resolved: Sequence[spans_lib.ResolvedSpan]
) -> None:
    """Records on both outputs the newest span and its version (the Examples artifact's standard
    properties, which TFX's span-aware resolvers read) and every span ingested. Without spans, the
    Examples span is 0, as TFX's ExampleGen sets it for a path without `{SPAN}`."""
    newest = resolved[-1]
    if newest.span is None:
        examples.span = 0
        return
    listed = spans_lib.to_json(resolved)
    examples.span = newest.span
    ingest_report.set_int_custom_property("span", newest.span)
    if newest.version is not None:
        examples.version = newest.version
        ingest_report.set_int_custom_property("version", newest.version)
    examples.set_string_custom_property(SPANS_PROPERTY, listed)
    ingest_report.set_string_custom_property(SPANS_PROPERTY, listed)
