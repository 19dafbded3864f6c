"""The pipeline end to end on the bundled sample with the tiny configuration (LocalDagRunner,
SQLite ML Metadata, Beam DirectRunner): every component runs, the pushed model answers raw text, the
lineage links it to its examples, and a second run with nothing changed comes from the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = (
    "ClinicalExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "SentencePieceTokenizer",
    "TokenizedTransform", "TokenSchemaGen", "token_validator", "AnomalyGate", "pretrain", "finetune",
    "latest_blessed_model_resolver", "Evaluator", "ServingCheck", "Pusher",
)  # fmt: skip


def _run(output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "pipeline_runner.py", "run", "--tiny", "--output-dir", str(output_dir), *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _executions(metadata_path: Path):
    """Node id -> the states of its executions, oldest first; and the store."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    store = metadata_store.MetadataStore(config)
    states = {}
    for context in store.get_contexts_by_type("node"):
        node = context.name.split(".")[-1]  # "<pipeline>.<node id>"
        executions = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
        states[node] = [metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in executions]
    return states, store


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    return out, _run(out)


def test_every_component_runs_and_the_pushed_model_answers_raw_text(first_run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the model's SentencePiece ops)

    out, result = first_run
    states, _ = _executions(out / "metadata.sqlite")
    ran = {name for name, runs in states.items() if runs and runs[-1] in ("COMPLETE", "CACHED")}
    assert set(COMPONENTS) <= ran, sorted(set(COMPONENTS) - ran)
    versions = sorted(os.listdir(out / "serving"), key=int)
    assert len(versions) == 1 and f"pushed model: {out / 'serving' / versions[0]}" in result.stdout
    model = tf.saved_model.load(str(out / "serving" / versions[0]))
    answer = model.signatures["serving_default"](
        text=tf.constant(["Chest pain and shortness of breath.", "Left knee arthroscopy, no complications."])
    )
    probabilities, names = answer["probabilities"].numpy(), answer["label_names"].numpy()
    assert probabilities.shape == (2, len(names)) and len(names) > 1
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probabilities >= 0)


def test_lineage_links_the_pushed_model_to_its_examples(first_run):
    out, _ = first_run
    _, store = _executions(out / "metadata.sqlite")
    artifacts = {a.id: a for a in store.get_artifacts()}
    types = {t.id: t.name for t in store.get_artifact_types()}
    pushed = [a for a in artifacts.values() if types[a.type_id] == "PushedModel"]
    assert len(pushed) == 1
    frontier, seen = {pushed[0].id}, set()
    while frontier:  # walk producer executions back to the ingested examples
        events = store.get_events_by_artifact_ids(list(frontier))
        executions = {e.execution_id for e in events if e.type == e.OUTPUT}
        seen |= frontier
        inputs = store.get_events_by_execution_ids(list(executions))
        frontier = {e.artifact_id for e in inputs if e.type == e.INPUT} - seen
    ancestors = {types[artifacts[i].type_id] for i in seen}
    assert {"Examples", "SentencePieceTokenizer", "TransformGraph", "Model"} <= ancestors


def test_second_run_with_nothing_changed_is_cached(first_run):
    out, _ = first_run
    _run(out)
    states, _ = _executions(out / "metadata.sqlite")
    for name in ("ClinicalExampleGen", "TokenizedTransform", "pretrain", "finetune", "Evaluator"):
        assert states[name][-1] == "CACHED", (name, states[name])
