"""A small ML Metadata store shaped like the one a local run of the pipeline writes, for the history and
retention tests: the context types "pipeline", "pipeline_run" (named by the run id, a child of the
pipeline context) and "node" (`<pipeline>.<node id>`); one execution per node with its state, exec
properties as custom properties, and INPUT/OUTPUT events keyed by the component's input/output names;
a cached execution outputs the artifacts it reuses; artifact types with TFX's names. Each artifact
folder holds a file of the size asked for, under `<root>/pipeline/<node>/<key>/<execution id>`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

PIPELINE = "clinical-albert"
TOKENIZER_TYPE = "clinical_albert.SentencePieceTokenizer"
ARTIFACT_TYPES = (
    "Examples", "Model", "ModelBlessing", "PushedModel", "ModelEvaluation", "TransformGraph",
    TOKENIZER_TYPE, "clinical_albert.ModelCard",
)  # fmt: skip
#: TFX's Examples declares span and version as properties (the rest are custom properties).
EXAMPLES_PROPERTIES = {"span": metadata_store_pb2.INT, "version": metadata_store_pb2.INT}

State = metadata_store_pb2.Execution.State


@dataclasses.dataclass(frozen=True)
class Made:
    """An output to create: its type, size on disk and custom properties."""

    type: str
    size: int = 100
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)


def _set(target, name: str, value: Any) -> None:
    if isinstance(value, bool | int):
        target[name].int_value = int(value)
    elif isinstance(value, float):
        target[name].double_value = value
    else:
        target[name].string_value = str(value)


class StoreBuilder:
    """Writes runs into a fresh SQLite store at `<root>/metadata.sqlite`, as TFX's local runner does."""

    def __init__(self, root: Path, pipeline: str = PIPELINE):
        self.root = root
        self.pipeline = pipeline
        self.metadata_path = root / "metadata.sqlite"
        root.mkdir(parents=True, exist_ok=True)
        connection = metadata_store_pb2.ConnectionConfig()
        connection.sqlite.filename_uri = str(self.metadata_path)
        self.store = metadata_store.MetadataStore(connection)
        self._context_types = {
            name: self.store.put_context_type(metadata_store_pb2.ContextType(name=name))
            for name in ("pipeline", "pipeline_run", "node")
        }
        self._artifact_types = {}
        for name in ARTIFACT_TYPES:
            artifact_type = metadata_store_pb2.ArtifactType(name=name)
            if name == "Examples":
                artifact_type.properties.update(EXAMPLES_PROPERTIES)
            self._artifact_types[name] = self.store.put_artifact_type(artifact_type)
        self._execution_type = self.store.put_execution_type(
            metadata_store_pb2.ExecutionType(name="Component")
        )
        self._pipeline_context = self._context("pipeline", pipeline)
        self._nodes: dict[str, int] = {}
        self.run_id: str | None = None
        self._run_context: int | None = None
        self.uris: dict[int, str] = {}

    def _context(self, kind: str, name: str) -> int:
        context = metadata_store_pb2.Context(type_id=self._context_types[kind], name=name)
        return self.store.put_contexts([context])[0]

    def start_run(self, run_id: str) -> None:
        """Later executions belong to run `run_id` (a child of the pipeline context, as TFX records it)."""
        self.run_id = run_id
        self._run_context = self._context("pipeline_run", run_id)
        parent = metadata_store_pb2.ParentContext(
            child_id=self._run_context, parent_id=self._pipeline_context
        )
        self.store.put_parent_contexts([parent])

    def execute(
        self,
        node: str,
        state: str = "COMPLETE",
        inputs: dict[str, int] | None = None,
        outputs: dict[str, Made] | None = None,
        reused: dict[str, int] | None = None,
        properties: dict[str, Any] | None = None,
    ) -> dict[str, int]:
        """One execution of `node` in the current run: `inputs` and `reused` (a cached execution's
        outputs) by key -> artifact id; `outputs` are created. Returns every output key -> artifact id."""
        if node not in self._nodes:
            self._nodes[node] = self._context("node", f"{self.pipeline}.{node}")
        execution = metadata_store_pb2.Execution(
            type_id=self._execution_type, last_known_state=State.Value(state)
        )
        for name, value in (properties or {}).items():
            _set(execution.custom_properties, name, value)
        [execution_id] = self.store.put_executions([execution])
        events, ids = [], {}
        for key, artifact_id in (inputs or {}).items():
            events.append(self._event(metadata_store_pb2.Event.INPUT, key, artifact_id))
        for key, made in (outputs or {}).items():
            ids[key] = self._artifact(made, Path("pipeline", node, key, str(execution_id)))
        ids.update(reused or {})
        events += [self._event(metadata_store_pb2.Event.OUTPUT, key, i) for key, i in ids.items()]
        for event in events:
            event.execution_id = execution_id
        self.store.put_events(events)
        self.store.put_attributions_and_associations(
            [],
            [
                metadata_store_pb2.Association(context_id=context, execution_id=execution_id)
                for context in (self._pipeline_context, self._run_context, self._nodes[node])
            ],
        )
        return ids

    def _artifact(self, made: Made, relative: Path) -> int:
        folder = self.root / relative
        folder.mkdir(parents=True)
        (folder / "data.bin").write_bytes(b"x" * made.size)
        artifact = metadata_store_pb2.Artifact(
            type_id=self._artifact_types[made.type], uri=str(folder), state=metadata_store_pb2.Artifact.LIVE
        )
        for name, value in made.properties.items():
            target = artifact.properties if name in EXAMPLES_PROPERTIES and made.type == "Examples" else None
            _set(artifact.custom_properties if target is None else target, name, value)
        [artifact_id] = self.store.put_artifacts([artifact])
        self.uris[artifact_id] = str(folder)
        return artifact_id

    @staticmethod
    def _event(kind: int, key: str, artifact_id: int) -> metadata_store_pb2.Event:
        event = metadata_store_pb2.Event(type=kind, artifact_id=artifact_id)
        event.path.steps.add().key = key
        event.path.steps.add().index = 0
        return event

    def state(self, artifact_id: int) -> str:
        [artifact] = self.store.get_artifacts_by_id([artifact_id])
        return metadata_store_pb2.Artifact.State.Name(artifact.state)


@dataclasses.dataclass
class History:
    """The ids of what `three_runs` wrote, by name."""

    builder: StoreBuilder
    run_ids: list[str]
    ids: dict[str, int]


def three_runs(root: Path) -> History:
    """Three runs like those of the tiny pipeline, oldest first:

    A: everything ran; the model was blessed and pushed as version 100 (micro_f1 0.31).
    B: new data; the tokenizer reused A's vocabulary, pretraining continued from A's model, and
       fine-tuning failed.
    C: B's data again: ExampleGen was cached; pretraining continued from B's model, fine-tuning warm
       started from A's blessed model; not blessed (micro_f1 0.26), so not pushed.
    """
    b = StoreBuilder(root)
    ids: dict[str, int] = {}
    run_ids = ["2026-01-05T02:00:00.000001", "2026-01-06T02:00:00.000001", "2026-01-07T02:00:00.000001"]

    b.start_run(run_ids[0])
    gen = b.execute(
        "ClinicalExampleGen",
        outputs={"examples": Made("Examples", 4000, {"span": 0})},
        properties={"input_base": "notes/sample.csv", "input_fingerprint": "1 files, sha256 aaa111"},
    )
    ids["examples_a"] = gen["examples"]
    tok = b.execute(
        "SentencePieceTokenizer",
        inputs={"examples": ids["examples_a"]},
        outputs={
            "tokenizer": Made(TOKENIZER_TYPE, 300, {"vocab_size": 2000, "unk_rate": 0.0005, "reused": 0})
        },
    )
    ids["tokenizer_a"] = tok["tokenizer"]
    transform = b.execute(
        "TokenizedTransform",
        inputs={"examples": ids["examples_a"], "tokenizer": ids["tokenizer_a"]},
        outputs={
            "transformed_examples": Made("Examples", 2000),
            "transform_graph": Made("TransformGraph", 500),
        },
    )
    ids["transformed_a"], ids["graph_a"] = transform["transformed_examples"], transform["transform_graph"]
    ids["pretrained_a"] = b.execute(
        "pretrain",
        inputs={"examples": ids["transformed_a"], "tokenizer": ids["tokenizer_a"]},
        outputs={"model": Made("Model", 6000)},
    )["model"]
    ids["finetuned_a"] = b.execute(
        "finetune",
        inputs={
            "examples": ids["transformed_a"],
            "base_model": ids["pretrained_a"],
            "transform_graph": ids["graph_a"],
        },
        outputs={"model": Made("Model", 7000)},
    )["model"]
    evaluator = b.execute(
        "Evaluator",
        inputs={"examples": ids["examples_a"], "model": ids["finetuned_a"]},
        outputs={
            "evaluation": Made("ModelEvaluation", 200),
            "blessing": Made("ModelBlessing", 10, {"blessed": 1, "current_model_id": ids["finetuned_a"]}),
        },
    )
    ids["evaluation_a"], ids["blessing_a"] = evaluator["evaluation"], evaluator["blessing"]
    ids["card_a"] = b.execute(
        "ModelCard",
        inputs={"model": ids["finetuned_a"], "blessing": ids["blessing_a"]},
        outputs={
            "model_card": Made("clinical_albert.ModelCard", 50, {"headline": "micro_f1", "micro_f1": 0.31})
        },
    )["model_card"]
    pushed = {"pushed": 1, "pushed_version": "100", "pushed_destination": str(root / "serving" / "100")}
    ids["pushed_a"] = b.execute(
        "Pusher",
        inputs={"model": ids["finetuned_a"], "model_blessing": ids["blessing_a"]},
        outputs={"pushed_model": Made("PushedModel", 7000, pushed)},
    )["pushed_model"]

    b.start_run(run_ids[1])
    spans = '[{"path": "notes/2/", "span": 2, "version": 1}]'
    gen = b.execute(
        "ClinicalExampleGen",
        outputs={"examples": Made("Examples", 4000, {"span": 2, "version": 1, "spans": spans})},
        properties={"input_base": "notes/{SPAN}/", "input_fingerprint": "3 files, sha256 bbb222"},
    )
    ids["examples_b"] = gen["examples"]
    tokenizer_b = {"vocab_size": 2000, "unk_rate": 0.0007, "reused": 1, "vocabulary_version": 1}
    tokenizer_b["reused_from"] = b.uris[ids["tokenizer_a"]]
    ids["tokenizer_b"] = b.execute(
        "SentencePieceTokenizer",
        inputs={"examples": ids["examples_b"], "previous": ids["tokenizer_a"]},
        outputs={"tokenizer": Made(TOKENIZER_TYPE, 300, tokenizer_b)},
    )["tokenizer"]
    transform = b.execute(
        "TokenizedTransform",
        inputs={"examples": ids["examples_b"], "tokenizer": ids["tokenizer_b"]},
        outputs={
            "transformed_examples": Made("Examples", 2000),
            "transform_graph": Made("TransformGraph", 500),
        },
    )
    ids["transformed_b"], ids["graph_b"] = transform["transformed_examples"], transform["transform_graph"]
    ids["pretrained_b"] = b.execute(
        "pretrain",
        inputs={
            "examples": ids["transformed_b"],
            "tokenizer": ids["tokenizer_b"],
            "base_model": ids["pretrained_a"],
        },
        outputs={"model": Made("Model", 6000)},
    )["model"]
    b.execute(
        "finetune",
        state="FAILED",
        inputs={
            "examples": ids["transformed_b"],
            "base_model": ids["pretrained_b"],
            "transform_graph": ids["graph_b"],
        },
    )

    b.start_run(run_ids[2])
    b.execute(
        "ClinicalExampleGen",
        state="CACHED",
        reused={"examples": ids["examples_b"]},
        properties={"input_base": "notes/{SPAN}/"},
    )
    ids["tokenizer_c"] = b.execute(
        "SentencePieceTokenizer",
        inputs={"examples": ids["examples_b"], "previous": ids["tokenizer_a"]},
        outputs={"tokenizer": Made(TOKENIZER_TYPE, 300, tokenizer_b)},
    )["tokenizer"]
    b.execute(
        "TokenizedTransform",
        state="CACHED",
        inputs={"examples": ids["examples_b"], "tokenizer": ids["tokenizer_b"]},
        reused={"transformed_examples": ids["transformed_b"], "transform_graph": ids["graph_b"]},
    )
    ids["pretrained_c"] = b.execute(
        "pretrain",
        inputs={
            "examples": ids["transformed_b"],
            "tokenizer": ids["tokenizer_c"],
            "base_model": ids["pretrained_b"],
        },
        outputs={"model": Made("Model", 6000)},
    )["model"]
    ids["finetuned_c"] = b.execute(
        "finetune",
        inputs={
            "examples": ids["transformed_b"],
            "base_model": ids["pretrained_c"],
            "warm_start_model": ids["finetuned_a"],
            "transform_graph": ids["graph_b"],
        },
        outputs={"model": Made("Model", 7000)},
    )["model"]
    evaluator = b.execute(
        "Evaluator",
        inputs={
            "examples": ids["examples_b"],
            "model": ids["finetuned_c"],
            "baseline_model": ids["finetuned_a"],
        },
        outputs={
            "evaluation": Made("ModelEvaluation", 200),
            "blessing": Made("ModelBlessing", 10, {"blessed": 0, "current_model_id": ids["finetuned_c"]}),
        },
    )
    ids["blessing_c"] = evaluator["blessing"]
    b.execute(
        "ModelCard",
        inputs={"model": ids["finetuned_c"], "blessing": ids["blessing_c"]},
        outputs={
            "model_card": Made("clinical_albert.ModelCard", 50, {"headline": "micro_f1", "micro_f1": 0.26})
        },
    )
    b.execute(
        "Pusher",
        inputs={"model": ids["finetuned_c"], "model_blessing": ids["blessing_c"]},
        outputs={"pushed_model": Made("PushedModel", 10, {"pushed": 0})},
    )
    return History(b, run_ids, ids)
