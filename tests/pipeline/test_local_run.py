"""The pipeline end to end with the tiny configuration (LocalDagRunner, SQLite ML Metadata, Beam
DirectRunner), on the bundled sample with a few broken records appended:

- every component runs, the broken records are rejected and counted, and the pushed model (the
  default task: multi-label specialties) answers raw text with every label's probability and the
  labels predicted at the thresholds it chose on the eval split;
- the run's model card, in the pipeline artifacts and beside the pushed model, scores the eval split as
  the Evaluator does and names the blessing;
- ML Metadata links the pushed model back to its examples, tokenizer and transform graph;
- a second run with nothing changed comes from the cache;
- a changed hyperparameter (a learning rate of 0 and an F1 floor it cannot reach) re-runs the
  fine-tuning Trainer and what follows, is not blessed, and is not pushed; its card says why;
- a drifted corpus (a label the curated schema does not know) stops the run at the anomaly gate;
- a new span of the corpus (its path holds {SPAN}) is ingested alone, with the vocabulary reused, and
  pretraining and fine-tuning continue from the last run's pretrained and blessed models (lineage).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.pipeline.runs import (
    COMPONENTS,
    REPO,
    executions,
    overall_metrics,
    ran_every_component,
    run_pipeline,
)

SAMPLE = REPO / "data" / "sample" / "mtsamples_sample.csv"
BROKEN_ROWS = (
    b'900001,1,Surgery,x,x,"an unreadable \xff\xfe byte",x,x\n'  # bad UTF-8
    b"900002,1,Surgery,x,x,,x,x\n"  # empty text
    b'900003,1,Surgery,x,x,"a note whose quote never closes'  # truncated last record
)


def _corpus(folder: Path, rows: bytes = BROKEN_ROWS, relabel: str | None = None) -> Path:
    """The sample (and `rows`) as span 1 of a corpus whose path holds {SPAN}; returns that path."""
    data = SAMPLE.read_bytes()
    if relabel:  # every note moved to a specialty the schema has never seen
        import csv
        import io

        table = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        for row in table[1:]:
            row[2] = relabel
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(table)
        data = buffer.getvalue().encode("utf-8")
    (folder / "span-1").mkdir()
    (folder / "span-1" / "corpus.csv").write_bytes(data + rows)
    return folder / "span-{SPAN}" / "corpus.csv"


def _new_span(corpus: Path, span: int, notes: int) -> int:
    """Span `span` beside span 1: the first `notes` sample notes as new notes (new ids, a follow-up
    line added). Returns its number of records."""
    import csv
    import io

    table = list(csv.reader(io.StringIO(SAMPLE.read_text(encoding="utf-8"))))
    rows = [row for row in table[1:] if row[0]][:notes]
    for row in rows:
        row[0] = f"{span}{row[0]}"
        row[5] = f"{row[5]}\nFollow-up visit {span}: no change."
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([table[0], *rows])
    folder = corpus.parent.parent / f"span-{span}"
    folder.mkdir()
    (folder / "corpus.csv").write_text(buffer.getvalue(), encoding="utf-8")
    return len(rows)


def _run(output_dir: Path, corpus: Path, *extra: str, check: bool = True):
    return run_pipeline(output_dir, "--corpus", str(corpus), *extra, check=check)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    corpus = _corpus(tmp_path_factory.mktemp("corpus"))
    return out, _run(out, corpus), corpus


def test_every_component_runs_and_the_pushed_model_answers_raw_text(first_run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the model's SentencePiece ops)

    out, result, _ = first_run
    assert ran_every_component(out)
    versions = sorted(os.listdir(out / "serving"), key=int)
    assert len(versions) == 1 and f"pushed model: {out / 'serving' / versions[0]}" in result.stdout
    model = tf.saved_model.load(str(out / "serving" / versions[0]))
    # What is pushed holds the client signatures only; the Evaluator's stay in the Trainer's full copy.
    assert set(model.signatures) == {"serving_default", "classify"}
    trainer_copy = next(out.glob("**/finetune/model/*/Format-Serving"))
    full = set(tf.saved_model.load(str(trainer_copy)).signatures)
    assert full == {"serving_default", "classify", "predict_examples", "transform_features"}
    answer = model.signatures["serving_default"](
        text=tf.constant(["Chest pain and shortness of breath.", "Left knee arthroscopy, no complications."])
    )
    probabilities, names = answer["probabilities"].numpy(), answer["label_names"].numpy()
    assert probabilities.shape == (2, 40) and names.shape == (2, 40)
    assert names[0][3] == names[1][3] == b"Cardiovascular / Pulmonary"
    assert np.all((probabilities >= 0) & (probabilities <= 1))  # independent sigmoids
    # Predicted: each label whose probability reaches the threshold stored in the model.
    thresholds = model.thresholds.numpy()
    assert thresholds.shape == (40,) and np.all((thresholds >= 0.01) & (thresholds <= 0.99))
    np.testing.assert_array_equal(answer["predicted"].numpy(), probabilities >= thresholds)


def test_the_console_has_a_line_per_component_and_no_library_noise(first_run):
    out, result, _ = first_run
    ended = {}
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] in COMPONENTS and words[1] in ("ran", "cached"):
            ended.setdefault(words[0], line)
    assert set(ended) == set(COMPONENTS)
    # Each line's figure: what ingestion kept, the vocabulary, the steps and loss, the blessing, the push.
    assert "263 kept, 3 rejected" in ended["ClinicalExampleGen"]
    assert "vocabulary" in ended["SentencePieceTokenizer"] and "trained" in ended["SentencePieceTokenizer"]
    assert "20 steps, final loss" in ended["pretrain"] and "from scratch" in ended["pretrain"]
    assert "blessed, micro_f1" in ended["Evaluator"] and "pushed version" in ended["Pusher"]
    # The libraries' output is in the run's log, not on the console.
    noise = ("WARNING", "absl", "tensorflow/", "Warning", "apache_beam", "cuda", "I0000", "E0000")
    console = result.stdout + result.stderr
    assert not [word for word in noise if word in console], console[-3000:]
    log = Path(result.stdout.split("log: ")[1].split()[0])
    assert log.parent == out / "logs" and "tensorflow" in log.read_text()
    assert f"model card: {out}" in result.stdout


def test_the_evaluator_scores_every_label_at_its_threshold(first_run):
    out, _, _ = first_run
    overall, per_label = overall_metrics(out)
    names = {"micro_f1", "multi_label_macro_f1", "micro_precision", "micro_recall", "subset_accuracy"}
    assert names <= set(overall) and 0.0 <= overall["micro_f1"] <= 1.0
    assert {label for name, label in per_label if name == "f1"} == set(range(40))
    # How the model reads a note, chosen on the eval split, with both poolings' figures.
    (reading_file,) = (out / "pipeline" / "finetune" / "model_run").glob("*/reading.json")
    reading = json.loads(reading_file.read_text())
    figures = reading["eval_by_window_pooling"]
    assert set(figures) == {"mean", "max"} and reading["window_pooling"] in figures
    assert figures[reading["window_pooling"]] == max(figures.values())
    assert len(reading["thresholds"]) == 40 and reading["eval_notes"] > 0


def test_the_pushed_model_is_served_over_grpc(first_run):
    # The Pusher's base directory is what the model server reads. Over a real socket, with batching on
    # (TF Serving's rule: every output is split along its first dimension), Predict with raw text and
    # Classify with tf.Examples answer what the SavedModel answers in process.
    import grpc
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the model's SentencePiece ops)

    from serving.batching import BatchingParameters
    from serving.client import DEFAULT_MODEL, ServingClient, ServingError
    from serving.model_server import ModelServer
    from serving.models_config import ModelEntry

    out, _, _ = first_run
    version = max(os.listdir(out / "serving"), key=int)
    notes = ["Chest pain and shortness of breath.", "Left knee arthroscopy, no complications."]
    in_process = tf.saved_model.load(str(out / "serving" / version))
    local = in_process.signatures["serving_default"](text=tf.constant(notes))
    expected = local["probabilities"].numpy()
    names = [name.decode() for name in local["label_names"].numpy()[0]]

    batching = BatchingParameters(max_batch_size=8, batch_timeout_micros=20_000, num_batch_threads=1)
    server = ModelServer(
        [ModelEntry(DEFAULT_MODEL, str(out / "serving"))], port=0, poll_seconds=0, batching=batching
    )
    port = server.start()
    try:
        with ServingClient(f"127.0.0.1:{port}") as client:
            assert [(s.version, s.state) for s in client.status()] == [(int(version), "AVAILABLE")]
            for answer in (client.predict(notes), client.classify(notes)):
                got = np.array([[row[name] for name in names] for row in answer])
                np.testing.assert_allclose(got, expected, atol=1e-5)
            # A whole note is read in windows, up to the model's cap; past it the client is told why.
            long_note = " ".join(["Chest pain radiating to the left arm, worse on exertion."] * 40)
            assert len(client.labels([long_note])) == 1
            with pytest.raises(ServingError) as refused:
                client.predict([long_note * 6])
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "at most 2078 SentencePiece pieces" in refused.value.details
    finally:
        server.stop(grace_seconds=1.0)


def _cards(out: Path) -> list[Path]:
    """The ModelCard artifacts' folders, oldest first."""
    return sorted((out / "pipeline" / "ModelCard" / "model_card").iterdir(), key=lambda p: int(p.name))


def test_the_model_card_scores_as_the_evaluator_and_is_pushed_with_the_model(first_run):
    out, _, _ = first_run
    (folder,) = _cards(out)
    card = json.loads((folder / "model_card.json").read_text())
    markdown = (folder / "model_card.md").read_text()
    assert card["problems"] == [], card["problems"]
    # The Trainer's eval predictions and the Evaluator score the same eval split at the same thresholds.
    overall, per_label = overall_metrics(out)
    evaluation = card["evaluation"]
    assert evaluation["headline"] == "micro_f1" and evaluation["units"] > 0
    for name, figure in evaluation["overall"].items():
        assert abs(figure["value"] - overall[figure["evaluator_name"]]) <= 1e-6, name
        assert figure["low"] <= figure["value"] <= figure["high"], name
    for class_id, row in enumerate(evaluation["per_class"]):
        assert abs(row["f1"]["value"] - per_label[("f1", class_id)]) <= 1e-6, row["name"]
    sliced = [row for rows in evaluation["slices"].values() for row in rows]
    assert sliced and all(row["overall"]["micro_f1"]["evaluator"] is not None for row in sliced)
    for row in sliced:
        assert abs(row["overall"]["micro_f1"]["value"] - row["overall"]["micro_f1"]["evaluator"]) <= 1e-6
    assert f"{evaluation['overall']['micro_f1']['value']:.3f}" in markdown
    # The blessing, against no baseline on a first run.
    assert card["blessing"]["decision"] == "blessed" and card["blessing"]["baseline"] == "none: first model"
    assert "Blessing: **blessed**" in markdown
    assert card["training_data"]["records"]["rejected"] == 3 and card["pretraining"]["preset"] == "tiny"
    assert card["fine_tuning"]["steps_trained"] > 0 and card["tokenizer"]["vocab_size"] > 0
    for path in card["report"].values():
        assert (folder / path).read_bytes().startswith(b"\x89PNG")
    # Beside the pushed model, with its version; the served version is unchanged by it.
    version = max(os.listdir(out / "serving"), key=int)
    pushed_folder = out / "serving" / version / "assets.extra" / "model_card"
    pushed = json.loads((pushed_folder / "model_card.json").read_text())
    assert pushed["push"]["version"] == version
    assert pushed["evaluation"]["overall"] == evaluation["overall"]
    assert f"Pushed as version {version}" in (pushed_folder / "model_card.md").read_text()
    assert all((pushed_folder / path).is_file() for path in card["report"].values())


def test_broken_records_are_rejected_and_counted(first_run):
    import json

    out, _, _ = first_run
    (summary,) = (out / "pipeline" / "ClinicalExampleGen" / "report").glob("*/summary.json")
    counts = json.loads(summary.read_text())
    assert counts["input_records"] == 587 + 3
    assert counts["rejected"] == 3 and counts["kept_examples"] == 263
    assert (
        counts["input_records"]
        == counts["kept_examples"] + counts["duplicates_collapsed"] + counts["rejected"]
    )


def test_lineage_links_the_pushed_model_to_its_examples(first_run):
    out, _, _ = first_run
    _, store = executions(out / "metadata.sqlite")
    artifacts = {a.id: a for a in store.get_artifacts()}
    types = {t.id: t.name for t in store.get_artifact_types()}
    pushed = [a for a in artifacts.values() if types[a.type_id] == "PushedModel"]
    assert len(pushed) == 1
    frontier, seen = {pushed[0].id}, set()
    while frontier:  # walk producer executions back to the ingested examples
        events = store.get_events_by_artifact_ids(list(frontier))
        producers = {e.execution_id for e in events if e.type == e.OUTPUT}
        seen |= frontier
        inputs = store.get_events_by_execution_ids(list(producers))
        frontier = {e.artifact_id for e in inputs if e.type == e.INPUT} - seen
    ancestors = {types[artifacts[i].type_id] for i in seen}
    assert {"Examples", "clinical_albert.SentencePieceTokenizer", "TransformGraph", "Model"} <= ancestors


def test_second_run_with_nothing_changed_is_cached(first_run):
    out, _, corpus = first_run
    _run(out, corpus)
    states, _ = executions(out / "metadata.sqlite")
    for name in (
        "ClinicalExampleGen",
        "SentencePieceTokenizer",
        "TokenizedTransform",
        "pretrain",
        "finetune",
    ):
        assert states[name][-1] == "CACHED", (name, states[name])
    # The Evaluator meets a new baseline once (the model it blessed); the same model is not pushed again.
    assert len(os.listdir(out / "serving")) == 1
    # That evaluation's card names the model it was compared with: the one blessed before.
    card = json.loads((_cards(out)[-1] / "model_card.json").read_text())
    assert card["blessing"]["baseline"]["uri"] == card["model"]["uri"]


def test_worse_candidate_reruns_the_trainer_and_is_not_pushed(first_run):
    import tensorflow_model_analysis as tfma

    out, _, corpus = first_run
    result = _run(out, corpus, "--set", "finetune_learning_rate=0.0", "--set", "min_macro_f1=0.99")
    states, _ = executions(out / "metadata.sqlite")
    assert states["pretrain"][-1] == "CACHED"
    assert states["finetune"][-1] == "COMPLETE" and states["Evaluator"][-1] == "COMPLETE"
    assert len(os.listdir(out / "serving")) == 1 and "nothing pushed (not blessed)" in result.stdout
    evaluation = max((out / "pipeline" / "Evaluator" / "evaluation").iterdir(), key=lambda p: int(p.name))
    validation = tfma.load_validation_result(str(evaluation))
    assert not validation.validation_ok
    failed = {m.metric_key.name for f in validation.metric_validations_per_slice for m in f.failures}
    assert "micro_f1" in failed
    card = json.loads((_cards(out)[-1] / "model_card.json").read_text())
    assert card["blessing"]["decision"] == "not blessed"
    assert "micro_f1" in {f["metric"] for f in card["blessing"]["failed_thresholds"]}


def test_drifted_corpus_stops_at_the_anomaly_gate(first_run, tmp_path):
    out, _, _ = first_run
    (schema,) = (out / "pipeline" / "SchemaGen" / "schema").glob("*/schema.pbtxt")
    drifted = _corpus(tmp_path, rows=b"", relabel="Veterinary Medicine")
    result = _run(tmp_path / "run", drifted, "--set", f"schema_path={schema}", check=False)
    assert result.returncode == 1
    # The console names the component, the error in one line, and the log that holds the traceback.
    [failure] = [line for line in result.stdout.splitlines() if line.startswith("pipeline failed in")]
    assert failure.startswith(
        "pipeline failed in AnomalyGate: RuntimeError: ExampleValidator found anomalies"
    )
    assert "labels" in failure
    log = Path(result.stdout.split("full traceback: ")[1].split()[0])
    assert "Traceback" in log.read_text() and not result.stderr.strip()
    states, _ = executions(tmp_path / "run" / "metadata.sqlite")
    assert "pretrain" not in states or not states["pretrain"]


def _newest(store, node: str, key: str):
    """The newest execution of `node` (by id), and its input or output artifacts under `key`."""
    [context] = [c for c in store.get_contexts_by_type("node") if c.name.endswith(f".{node}")]
    execution = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
    events = store.get_events_by_execution_ids([execution.id])
    ids = [e.artifact_id for e in events if e.path.steps and e.path.steps[0].key == key]
    return execution, store.get_artifacts_by_id(ids)


def test_a_new_span_is_ingested_alone_and_builds_on_the_last_run(first_run):
    # Last in this module: it adds a span to the shared corpus.
    out, _, corpus = first_run
    _, store = executions(out / "metadata.sqlite")
    _, [first_vocabulary] = _newest(store, "SentencePieceTokenizer", "tokenizer")
    _, [first_pretrained] = _newest(store, "pretrain", "model")
    _, [blessed] = _newest(store, "latest_blessed_model_resolver", "model")
    records = _new_span(corpus, 2, notes=60)
    result = _run(out, corpus)
    states, store = executions(out / "metadata.sqlite")
    for node in ("ClinicalExampleGen", "SentencePieceTokenizer", "pretrain", "finetune"):
        assert states[node][-1] == "COMPLETE", (node, states[node])
    # Only span 2 was read, and every one of its records is accounted for.
    _, [report] = _newest(store, "ClinicalExampleGen", "report")
    summary = json.loads((Path(report.uri) / "summary.json").read_text())
    assert [s["span"] for s in summary["spans"]] == [2] and summary["input_records"] == records
    _, [examples] = _newest(store, "ClinicalExampleGen", "examples")
    assert examples.properties["span"].int_value == 2
    # The vocabulary is the first run's, reused, with its drift measured.
    _, [vocabulary] = _newest(store, "SentencePieceTokenizer", "tokenizer")
    properties = vocabulary.custom_properties
    assert properties["reused"].int_value == 1 and "drift" in properties
    same = first_vocabulary.custom_properties["vocabulary_sha256"].string_value
    assert properties["vocabulary_sha256"].string_value == same
    # Pretraining continued from the first run's pretrained model, fine-tuning from its blessed model.
    _, [base] = _newest(store, "pretrain", "base_model")
    assert base.id == first_pretrained.id
    _, [warm] = _newest(store, "finetune", "warm_start_model")
    assert warm.id == blessed.id
    for node in ("pretrain", "finetune"):
        _, [model_run] = _newest(store, node, "model_run")
        start = json.loads((Path(model_run.uri) / "training.json").read_text())["start"]
        expected = "continued from" if node == "pretrain" else "warm start from the last blessed model"
        assert start.startswith(expected), (node, start)
    assert "pushed model:" in result.stdout
    # What an operator reads: the runs, and this one's lineage.
    runs = _runner("runs", "--output-dir", str(out))
    newest = runs.splitlines()[1].split()[0]
    assert newest.startswith("20") and len(runs.splitlines()) >= 5
    lineage = _runner("show", newest, "--output-dir", str(out))
    assert f"continued from {first_pretrained.uri}" in lineage
    assert f"warm start from {blessed.uri}" in lineage
    assert f"reused the vocabulary of {first_vocabulary.uri}" in lineage


def _runner(*args: str) -> str:
    import subprocess
    import sys

    command = [sys.executable, "pipeline_runner.py", *args, "--tiny"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    return result.stdout
