"""What past runs of the pipeline did, read from ML Metadata (the SQLite store of local and Airflow runs).

TFX records each run as a `pipeline_run` context (its name is the run id) holding one execution per
node, each in a `node` context named `<pipeline>.<node id>`. A component served from the cache is
recorded as a CACHED execution whose inputs and outputs are the reused artifacts, so a cached step is
part of the run like one that ran. Nothing here writes: `list_runs` answers "what did the last runs do"
(a table), `show_run` "what was this run made from" (the lineage of its served model), and
pipeline/retention.py reads the same `PipelineRecord` to decide what may be deleted.

Figures come from artifact properties only (the ModelBlessing, the ModelCard's headline metric, the
PushedModel), so listing a hundred runs reads no artifact files.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"

# The node ids and output keys of pipeline/pipeline.py that a run's lineage is read from.
EXAMPLE_GEN, EXAMPLES_KEY = "ClinicalExampleGen", "examples"
TOKENIZER, TOKENIZER_KEY = "SentencePieceTokenizer", "tokenizer"
PRETRAIN, FINETUNE, MODEL_KEY = "pretrain", "finetune", "model"
BASE_MODEL_KEY, WARM_START_KEY = "base_model", "warm_start_model"
EVALUATOR, BLESSING_KEY, BASELINE_KEY = "Evaluator", "blessing", "baseline_model"
MODEL_CARD, MODEL_CARD_KEY = "ModelCard", "model_card"
PUSHER, PUSHED_MODEL_KEY = "Pusher", "pushed_model"

# ML Metadata's execution states, as a run's state counts them (the others: NEW, RUNNING, UNKNOWN).
DONE = frozenset({"COMPLETE", "CACHED"})
FAILED = frozenset({"FAILED", "CANCELED"})
#: How many run ids an error about an unknown run lists.
LISTED_IDS = 5


class RunNotFound(LookupError):
    """No run (or more than one) of the pipeline matches the id given."""


# -- the record ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Artifact:
    """An ML Metadata artifact. `properties`: its properties and custom properties together, as Python
    values (TFX's Examples keep `span` and `version` as properties, components add custom ones)."""

    id: int
    type: str
    uri: str
    state: str  # LIVE, DELETED, PENDING, ...
    created_ms: int
    properties: Mapping[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.properties.get(name, default)


@dataclasses.dataclass(frozen=True)
class Execution:
    """One node's execution. `properties`: the exec properties TFX recorded (as custom properties);
    `inputs`/`outputs`: artifact ids by the component's keys; `resolved`: what a Resolver node resolved
    (TFX records those as INTERNAL_OUTPUT events)."""

    id: int
    node: str
    state: str  # COMPLETE, CACHED, FAILED, RUNNING, ...
    created_ms: int
    updated_ms: int
    properties: Mapping[str, Any]
    inputs: Mapping[str, tuple[int, ...]]
    outputs: Mapping[str, tuple[int, ...]]
    resolved: Mapping[str, tuple[int, ...]]

    def artifact_ids(self) -> set[int]:
        """Every artifact this execution read, wrote or resolved."""
        return {
            i for group in (self.inputs, self.outputs, self.resolved) for ids in group.values() for i in ids
        }


@dataclasses.dataclass(frozen=True)
class Run:
    """One pipeline run: its id (the `pipeline_run` context's name) and its executions, oldest first."""

    id: str
    created_ms: int
    executions: tuple[Execution, ...]

    def last(self, node: str) -> Execution | None:
        """The run's newest execution of `node` (a node normally executes once per run)."""
        found = [e for e in self.executions if e.node == node]
        return found[-1] if found else None

    def artifact_ids(self) -> set[int]:
        return {i for execution in self.executions for i in execution.artifact_ids()}


@dataclasses.dataclass(frozen=True)
class PipelineRecord:
    """One pipeline's runs (newest first) and every artifact they touched, read from the store at once."""

    pipeline_name: str
    runs: tuple[Run, ...]
    artifacts: Mapping[int, Artifact]

    @functools.cached_property
    def executions(self) -> tuple[Execution, ...]:
        """Every execution of every run, oldest first."""
        return tuple(
            sorted({e.id: e for run in self.runs for e in run.executions}.values(), key=lambda e: e.id)
        )

    @functools.cached_property
    def _producers(self) -> dict[int, list[Execution]]:
        index: dict[int, list[Execution]] = {}
        for execution in self.executions:
            for ids in execution.outputs.values():
                for artifact_id in ids:
                    index.setdefault(artifact_id, []).append(execution)
        return index

    def producers(self, artifact_id: int) -> list[Execution]:
        """The executions that output `artifact_id`, oldest first: the one that made it, then any cached
        executions that reused it."""
        return list(self._producers.get(artifact_id, ()))

    def outputs_of(self, node: str, key: str) -> list[Artifact]:
        """Every artifact that `node` output under `key` in any run, oldest first."""
        ids = {i for e in self.executions if e.node == node for i in e.outputs.get(key, ())}
        return [self.artifacts[i] for i in sorted(ids) if i in self.artifacts]

    def made_by(self, artifact_id: int) -> Execution | None:
        """The execution that made `artifact_id`, not a cached one that reused it."""
        producers = self.producers(artifact_id)
        made = [e for e in producers if e.state != "CACHED"]
        return (made or producers or [None])[0]

    def inputs_of(self, artifact_id: int) -> dict[str, list[Artifact]]:
        """The inputs, by key, of the execution that made `artifact_id` (its lineage one step up)."""
        maker = self.made_by(artifact_id)
        if maker is None:
            return {}
        return {
            key: [self.artifacts[i] for i in ids if i in self.artifacts] for key, ids in maker.inputs.items()
        }

    def find_run(self, run_id: str) -> Run:
        """The run whose id is `run_id` or starts with it; RunNotFound when none or several match."""
        exact = [run for run in self.runs if run.id == run_id]
        matches = exact or [run for run in self.runs if run.id.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if not self.runs:
            raise RunNotFound(f"pipeline {self.pipeline_name!r} has no recorded runs")
        if matches:
            listed = ", ".join(run.id for run in matches[:LISTED_IDS])
            raise RunNotFound(f"run id {run_id!r} matches {len(matches)} runs ({listed}): give more of it")
        listed = ", ".join(run.id for run in self.runs[:LISTED_IDS])
        raise RunNotFound(f"pipeline {self.pipeline_name!r} has no run {run_id!r}; the newest are: {listed}")


def connect(metadata_path: str, read_only: bool = True):
    """The SQLite ML Metadata store at `metadata_path`; FileNotFoundError when there is none (opening
    a missing store would create an empty one and hide a wrong --output-dir)."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    if not os.path.exists(metadata_path):
        raise FileNotFoundError(
            f"no ML Metadata store at {metadata_path}: no local run has written there (check --output-dir)"
        )
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    if read_only:
        connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def _value(value) -> Any:
    """An ML Metadata Value as a Python value (struct and proto values are left out: none is read)."""
    kind = value.WhichOneof("value")
    return (
        getattr(value, kind) if kind in ("int_value", "double_value", "string_value", "bool_value") else None
    )


def _values(*maps) -> dict[str, Any]:
    return {name: _value(value) for properties in maps for name, value in properties.items()}


def pipeline_runs(store, pipeline_id: int) -> list:
    """The `pipeline_run` contexts of the pipeline context `pipeline_id` (TFX makes them its children)."""
    return [c for c in store.get_children_contexts_by_context(pipeline_id) if c.type == RUN_CONTEXT]


def load_record(store, pipeline_name: str) -> PipelineRecord:
    """Reads every run of `pipeline_name` with its executions, events and artifacts (a few queries, not
    one per execution). An unknown pipeline has no runs."""
    from ml_metadata.proto import metadata_store_pb2

    pipeline = store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline_name)
    if pipeline is None:
        return PipelineRecord(pipeline_name, (), {})
    prefix = f"{pipeline_name}."
    node_of: dict[int, str] = {}
    for context in store.get_contexts_by_type(NODE_CONTEXT):
        if context.name.startswith(prefix):
            for execution in store.get_executions_by_context(context.id):
                node_of[execution.id] = context.name[len(prefix) :]
    run_contexts = pipeline_runs(store, pipeline.id)
    members = {c.id: store.get_executions_by_context(c.id) for c in run_contexts}
    raw = {e.id: e for executions in members.values() for e in executions if e.id in node_of}

    events: dict[int, dict[int, dict[str, list[int]]]] = {i: {} for i in raw}
    for event in store.get_events_by_execution_ids(list(raw)) if raw else ():
        key = event.path.steps[0].key if event.path.steps else ""
        events[event.execution_id].setdefault(event.type, {}).setdefault(key, []).append(event.artifact_id)

    def by_key(execution_id: int, *kinds: int) -> dict[str, tuple[int, ...]]:
        found: dict[str, list[int]] = {}
        for kind in kinds:
            for key, ids in events[execution_id].get(kind, {}).items():
                found.setdefault(key, []).extend(ids)
        return {key: tuple(ids) for key, ids in found.items()}

    Event, State = metadata_store_pb2.Event, metadata_store_pb2.Execution.State
    executions = {
        i: Execution(
            id=i,
            node=node_of[i],
            state=State.Name(e.last_known_state),
            created_ms=e.create_time_since_epoch,
            updated_ms=e.last_update_time_since_epoch,
            properties=_values(e.properties, e.custom_properties),
            inputs=by_key(i, Event.INPUT, Event.DECLARED_INPUT),
            outputs=by_key(i, Event.OUTPUT, Event.DECLARED_OUTPUT, Event.PENDING_OUTPUT),
            resolved=by_key(i, Event.INTERNAL_OUTPUT),
        )
        for i, e in raw.items()
    }
    artifact_ids = {i for e in executions.values() for i in e.artifact_ids()}
    type_names = {t.id: t.name for t in store.get_artifact_types()}
    artifacts = {
        a.id: Artifact(
            id=a.id,
            type=type_names.get(a.type_id, str(a.type_id)),
            uri=a.uri,
            state=metadata_store_pb2.Artifact.State.Name(a.state),
            created_ms=a.create_time_since_epoch,
            properties=_values(a.custom_properties, a.properties),
        )
        for a in (store.get_artifacts_by_id(sorted(artifact_ids)) if artifact_ids else ())
    }
    runs = [
        Run(
            id=c.name,
            created_ms=c.create_time_since_epoch,
            executions=tuple(
                executions[e.id] for e in sorted(members[c.id], key=lambda e: e.id) if e.id in raw
            ),
        )
        for c in run_contexts
    ]
    runs = [run for run in runs if run.executions]
    runs.sort(key=lambda run: (run.created_ms, run.executions[0].id), reverse=True)
    return PipelineRecord(pipeline_name, tuple(runs), artifacts)


def read_record(metadata_path: str, pipeline_name: str) -> PipelineRecord:
    """`load_record` from the store at `metadata_path`, opened read-only."""
    return load_record(connect(metadata_path), pipeline_name)


# -- runs ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One line of `runs`. state: complete, failed, running (the newest run, unfinished) or interrupted
    (an older run left unfinished: its process was stopped). metric: the Evaluator's headline metric
    (the ModelCard names it); blessed: None when no Evaluator ran; pushed_version: None when nothing
    was pushed."""

    run_id: str
    started: datetime.datetime
    state: str
    duration_s: float
    metric: str | None
    metric_value: float | None
    blessed: bool | None
    pushed_version: str | None


def _first_output(record: PipelineRecord, execution: Execution | None, key: str) -> Artifact | None:
    ids = execution.outputs.get(key, ()) if execution else ()
    return record.artifacts.get(ids[0]) if ids else None


def _first_input(record: PipelineRecord, execution: Execution | None, key: str) -> Artifact | None:
    ids = execution.inputs.get(key, ()) if execution else ()
    return record.artifacts.get(ids[0]) if ids else None


def run_state(run: Run, newest: bool) -> str:
    """complete when every execution ended well and the Pusher (the last node) executed; failed when
    one failed; otherwise running, or interrupted for a run that is no longer the newest."""
    states = {e.state for e in run.executions}
    if states & FAILED:
        return "failed"
    if states <= DONE and run.last(PUSHER) is not None:
        return "complete"
    return "running" if newest else "interrupted"


def _headline(record: PipelineRecord, run: Run) -> tuple[str | None, float | None]:
    """The ModelCard's headline metric and its value (the Evaluator's blessing metric)."""
    card = _first_output(record, run.last(MODEL_CARD), MODEL_CARD_KEY)
    name = card.get("headline") if card else None
    value = card.get(name) if card and name else None
    return name, float(value) if isinstance(value, int | float) else None


def _blessed(record: PipelineRecord, run: Run) -> bool | None:
    blessing = _first_output(record, run.last(EVALUATOR), BLESSING_KEY)
    value = blessing.get("blessed") if blessing else None
    return None if value is None else bool(value)


def _pushed(record: PipelineRecord, run: Run) -> Artifact | None:
    """The run's PushedModel when it pushed (or found its model already served), else None."""
    pushed = _first_output(record, run.last(PUSHER), PUSHED_MODEL_KEY)
    return pushed if pushed is not None and pushed.get("pushed") else None


def summarize(record: PipelineRecord, run: Run) -> RunSummary:
    started_ms = min(e.created_ms for e in run.executions)
    ended_ms = max(e.updated_ms for e in run.executions)
    metric, value = _headline(record, run)
    pushed = _pushed(record, run)
    return RunSummary(
        run_id=run.id,
        started=datetime.datetime.fromtimestamp(started_ms / 1000),
        state=run_state(run, newest=run is record.runs[0]),
        duration_s=(ended_ms - started_ms) / 1000,
        metric=metric,
        metric_value=value,
        blessed=_blessed(record, run),
        pushed_version=str(pushed.get("pushed_version")) if pushed and pushed.get("pushed_version") else None,
    )


def list_runs(metadata_path: str, pipeline_name: str) -> list[RunSummary]:
    """One summary per run of `pipeline_name`, newest first."""
    record = read_record(metadata_path, pipeline_name)
    return [summarize(record, run) for run in record.runs]


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _metric_text(name: str | None, value: float | None) -> str:
    return f"{name} {value:.3f}" if name and value is not None else "-"


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def format_runs(summaries: Sequence[RunSummary]) -> str:
    """An aligned table, one run a line, newest first."""
    if not summaries:
        return "no runs recorded"
    header = ("RUN", "STARTED", "STATE", "DURATION", "METRIC", "BLESSED", "PUSHED")
    rows = [
        (
            s.run_id,
            s.started.strftime("%Y-%m-%d %H:%M"),
            s.state,
            format_duration(s.duration_s),
            _metric_text(s.metric, s.metric_value),
            _yes_no(s.blessed),
            s.pushed_version or "-",
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


# -- one run's lineage --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LineageItem:
    """One step of a run's lineage: what it is, which node made it, whether that node ran, was cached,
    failed or did not run in this run, and the facts (one a line)."""

    label: str
    node: str
    status: str
    facts: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RunLineage:
    summary: RunSummary
    items: tuple[LineageItem, ...]
    #: Executions by status ("ran", "cached", ...) -> node ids, for the one line that counts them.
    nodes: Mapping[str, tuple[str, ...]]


STATUS = {"COMPLETE": "ran", "CACHED": "cached", "FAILED": "failed", "CANCELED": "canceled"}


def _status(execution: Execution | None) -> str:
    if execution is None:
        return "not run"
    return STATUS.get(execution.state, execution.state.lower())


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _corpus(record: PipelineRecord, run: Run) -> LineageItem:
    execution = run.last(EXAMPLE_GEN)
    examples = _first_output(record, execution, EXAMPLES_KEY)
    facts = []
    # A cached ExampleGen execution records no fingerprint: the one that made the examples did.
    maker = record.made_by(examples.id) if examples else execution
    properties = {**(execution.properties if execution else {}), **(maker.properties if maker else {})}
    if properties.get("input_base"):
        facts.append(f"input {properties['input_base']}")
    if properties.get("input_fingerprint"):
        facts.append(f"fingerprint {properties['input_fingerprint']}")
    if examples:
        facts.append(f"examples {examples.uri}")
        spans = _spans(examples)
        if spans:
            facts.append(spans)
    return LineageItem("corpus", EXAMPLE_GEN, _status(execution), tuple(facts))


def _spans(examples: Artifact) -> str:
    """`spans 3, 4 (version 2)` from the `spans` custom property, else the Examples span/version."""
    try:
        listed = json.loads(examples.get("spans") or "[]")
    except json.JSONDecodeError:
        listed = []
    named = [
        f"{s['span']}" + (f" (version {s['version']})" if s.get("version") is not None else "")
        for s in listed
        if isinstance(s, Mapping) and s.get("span") is not None
    ]
    if named:
        return f"span{'s' if len(named) > 1 else ''} " + ", ".join(named)
    if examples.get("span") is None:
        return ""
    version = examples.get("version")
    return f"span {examples.get('span')}" + (f", version {version}" if version else "")


def _tokenizer(record: PipelineRecord, run: Run) -> LineageItem:
    execution = run.last(TOKENIZER)
    tokenizer = _first_output(record, execution, TOKENIZER_KEY)
    facts = []
    if tokenizer:
        facts.append(tokenizer.uri)
        figures = [
            f"{label} {_number(tokenizer.get(name))}"
            for label, name in (("vocabulary", "vocab_size"), ("<unk> rate", "unk_rate"))
            if tokenizer.get(name) is not None
        ]
        if tokenizer.get("vocabulary_version") is not None:
            figures.append(f"vocabulary version {tokenizer.get('vocabulary_version')}")
        if figures:
            facts.append(", ".join(figures))
        if tokenizer.get("reused"):
            facts.append(f"reused the vocabulary of {tokenizer.get('reused_from') or 'an earlier run'}")
        elif tokenizer.get("reused") is not None:
            facts.append("trained, not reused")
    return LineageItem("tokenizer", TOKENIZER, _status(execution), tuple(facts))


def _model(record: PipelineRecord, run: Run, node: str, label: str) -> LineageItem:
    execution = run.last(node)
    model = _first_output(record, execution, MODEL_KEY)
    facts = [model.uri] if model else []
    # The inputs of the execution in this run (a cached one records the same inputs as the one it reuses).
    base = _first_input(record, execution, BASE_MODEL_KEY)
    warm = _first_input(record, execution, WARM_START_KEY)
    if base:
        facts.append(f"{'continued from' if node == PRETRAIN else 'base model'} {base.uri}")
    if warm:
        facts.append(f"warm start from {warm.uri}")
    return LineageItem(label, node, _status(execution), tuple(facts))


def _evaluation(record: PipelineRecord, run: Run) -> LineageItem:
    execution = run.last(EVALUATOR)
    facts = []
    blessed = _blessed(record, run)
    metric, value = _headline(record, run)
    if blessed is not None:
        facts.append(
            ("blessed" if blessed else "not blessed") + (f", {_metric_text(metric, value)}" if metric else "")
        )
    baseline = _first_input(record, execution, BASELINE_KEY)
    if baseline:
        facts.append(f"baseline {baseline.uri}")
    return LineageItem("evaluation", EVALUATOR, _status(execution), tuple(facts))


def exists(path: str) -> bool:
    """Whether `path` exists, on local disk or (through TFX's fileio, which loads TensorFlow) elsewhere."""
    if "://" not in path:
        return os.path.exists(path)
    from tfx.dsl.io import fileio

    return fileio.exists(path)


def _push(record: PipelineRecord, run: Run) -> LineageItem:
    execution = run.last(PUSHER)
    output = _first_output(record, execution, PUSHED_MODEL_KEY)
    facts = []
    if output is not None and output.get("pushed"):
        destination = output.get("pushed_destination") or ""
        gone = destination and not exists(destination)
        facts.append(f"version {output.get('pushed_version')}" + (" (since removed)" if gone else ""))
        if destination:
            facts.append(f"destination {destination}")
    elif output is not None:
        facts.append("not pushed")
    return LineageItem("push", PUSHER, _status(execution), tuple(facts))


def run_lineage(metadata_path: str, pipeline_name: str, run_id: str) -> RunLineage:
    """The lineage of run `run_id` (or a unique prefix of it); RunNotFound names the newest run ids."""
    record = read_record(metadata_path, pipeline_name)
    run = record.find_run(run_id)
    nodes: dict[str, list[str]] = {}
    for execution in run.executions:
        nodes.setdefault(_status(execution), []).append(execution.node)
    return RunLineage(
        summary=summarize(record, run),
        items=(
            _corpus(record, run),
            _tokenizer(record, run),
            _model(record, run, PRETRAIN, "pretrained"),
            _model(record, run, FINETUNE, "fine-tuned"),
            _evaluation(record, run),
            _push(record, run),
        ),
        nodes={status: tuple(names) for status, names in nodes.items()},
    )


def format_lineage(lineage: RunLineage) -> str:
    summary = lineage.summary
    lines = [
        f"run {summary.run_id}: {summary.state}, started {summary.started:%Y-%m-%d %H:%M:%S}, "
        f"took {format_duration(summary.duration_s)}",
        "nodes: " + "; ".join(f"{len(names)} {status}" for status, names in lineage.nodes.items()),
    ]
    for status in ("failed", "canceled", "running"):
        if status in lineage.nodes:
            lines.append(f"{status}: " + ", ".join(lineage.nodes[status]))
    for item in lineage.items:
        lines.append(f"{item.label} ({item.node}: {item.status})")
        lines.extend(f"  {fact}" for fact in item.facts)
    return "\n".join(lines)


def show_run(metadata_path: str, pipeline_name: str, run_id: str) -> str:
    """`format_lineage(run_lineage(...))`: what an operator reads in a terminal."""
    return format_lineage(run_lineage(metadata_path, pipeline_name, run_id))
