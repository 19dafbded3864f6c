"""The local run's console (pipeline/console.py) and the Trainers' progress file
(components/trainer/progress.py): component lines and figures read from an ML Metadata store and
artifacts built here, the progress file's protocol, the redirection of file descriptors 1 and 2 to the
log, and how a failure is told.
No pipeline runs: each test is a fraction of a second, bar the Keras fit and the TFMA import."""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import pytest

from pipeline import component_figures, console

PIPELINE = "clinical-albert"


class FakeRun:
    """Executions of a pipeline's nodes in an ML Metadata store, as TFX's runner records them: a node
    context `<pipeline>.<node>`, the execution's state, and output artifacts under their output keys."""

    def __init__(self, path: Path):
        from ml_metadata import metadata_store
        from ml_metadata.proto import metadata_store_pb2 as mlmd

        self.mlmd = mlmd
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.node_type = self.store.put_context_type(mlmd.ContextType(name="node"))
        self.execution_type = self.store.put_execution_type(mlmd.ExecutionType(name="Component"))
        self.artifact_type = self.store.put_artifact_type(mlmd.ArtifactType(name="Artifact"))

    def execution(self, node: str, state: str, outputs: dict | None = None, pipeline: str = PIPELINE) -> int:
        """outputs: {key: (uri, {property: int, float or str})}."""
        mlmd = self.mlmd
        name = f"{pipeline}.{node}"
        context = self.store.get_context_by_type_and_name("node", name)
        if context is None:
            [context_id] = self.store.put_contexts([mlmd.Context(type_id=self.node_type, name=name)])
            context = self.store.get_contexts_by_id([context_id])[0]
        pairs = []
        for key, (uri, properties) in (outputs or {}).items():
            artifact = mlmd.Artifact(type_id=self.artifact_type, uri=str(uri))
            for prop, value in properties.items():
                field = {int: "int_value", float: "double_value", str: "string_value"}[type(value)]
                setattr(artifact.custom_properties[prop], field, value)
            steps = [mlmd.Event.Path.Step(key=key), mlmd.Event.Path.Step(index=0)]
            pairs.append((artifact, mlmd.Event(type=mlmd.Event.OUTPUT, path=mlmd.Event.Path(steps=steps))))
        execution = mlmd.Execution(type_id=self.execution_type, last_known_state=self._state(state))
        execution_id, _, _ = self.store.put_execution(execution, pairs, [context])
        return execution_id

    def set_state(self, execution_id: int, state: str) -> None:
        [execution] = self.store.get_executions_by_id([execution_id])
        execution.last_known_state = self._state(state)
        self.store.put_executions([execution])

    def _state(self, state: str) -> int:
        return self.mlmd.Execution.State.Value(state)


def _folder(tmp_path: Path, name: str, files: dict[str, object]) -> Path:
    folder = tmp_path / "pipeline" / name
    folder.mkdir(parents=True)
    for file_name, content in files.items():
        (folder / file_name).write_text(json.dumps(content), encoding="utf-8")
    return folder


def _monitor(tmp_path: Path, nodes, progress_file=None, main_metric=None):
    out = io.StringIO()
    monitor = console.RunMonitor(
        str(tmp_path / "metadata.sqlite"),
        PIPELINE,
        nodes,
        console.Console(out),
        progress_file=progress_file,
        main_metric=main_metric,
    )
    monitor.since_ms = 0
    return monitor, out


def _write_metrics(folder: Path, values: list[tuple[str, str, float, bool]]) -> None:
    """A TFMA evaluation: (slice value or "" for the whole split, model name, value, is_diff) of
    `micro_f1`, written as the Evaluator writes its metrics file."""
    import tensorflow as tf
    from tensorflow_model_analysis.proto import metrics_for_slice_pb2 as tfma_pb2

    folder.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(folder / "metrics-00000-of-00001.tfrecord")) as writer:
        for slice_value, model_name, value, is_diff in values:
            record = tfma_pb2.MetricsForSlice()
            if slice_value:
                key = record.slice_key.single_slice_keys.add(column="note_type")
                key.bytes_value = slice_value.encode()
            metric = record.metric_keys_and_values.add()
            metric.key.name = "micro_f1"
            metric.key.model_name = model_name
            metric.key.is_diff = is_diff
            metric.value.double_value.value = value
            writer.write(record.SerializeToString())


# -- component lines and figures ---------------------------------------------------------------------


def test_start_and_end_lines_follow_the_states_in_ml_metadata(tmp_path):
    run = FakeRun(tmp_path / "metadata.sqlite")
    nodes = ["StatisticsGen", "SchemaGen", "pretrain"]
    monitor, out = _monitor(tmp_path, nodes)
    run.execution("StatisticsGen", "CACHED")
    pretrain = run.execution("pretrain", "RUNNING")
    run.execution("SchemaGen", "RUNNING", pipeline="another-pipeline")  # not this pipeline's
    monitor.poll()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].split() == ["StatisticsGen", "cached", "0.0", "s"]
    assert lines[1].split() == ["pretrain", "started"]

    monitor.poll()  # nothing changed, nothing printed
    assert len(out.getvalue().splitlines()) == 2
    run.set_state(pretrain, "COMPLETE")
    monitor.poll()
    last = out.getvalue().splitlines()[-1].split()
    assert last[:2] == ["pretrain", "ran"] and last[3] == "s" and float(last[2]) >= 0
    assert [monitor.runs[n].status for n in nodes] == ["cached", "not run", "ran"]


def test_executions_of_earlier_runs_are_not_shown(tmp_path):
    run = FakeRun(tmp_path / "metadata.sqlite")
    run.execution("StatisticsGen", "COMPLETE")
    monitor, out = _monitor(tmp_path, ["StatisticsGen"])
    monitor.since_ms = 2**62  # the run started after every execution in the store
    monitor.poll()
    assert out.getvalue() == "" and monitor.runs["StatisticsGen"].status == "not run"


def test_a_store_not_yet_created_is_waited_for(tmp_path):
    monitor, out = _monitor(tmp_path, ["StatisticsGen"])
    monitor.poll()
    assert out.getvalue() == "" and not (tmp_path / "metadata.sqlite").exists()


def test_ingest_figure_counts_kept_and_rejected_by_reason_and_the_spans(tmp_path):
    summary = {
        "kept_examples": 412,
        "rejected": 3,
        "rejected_by_reason": {"too_long": 1, "empty_text": 2},
        "spans": [{"span": 3, "version": 1, "path": "notes-3.csv"}, {"span": 4, "version": None}],
    }
    folder = _folder(tmp_path, "report", {"summary.json": summary})
    run = FakeRun(tmp_path / "metadata.sqlite")
    run.execution("ClinicalExampleGen", "COMPLETE", {"report": (folder, {}), "examples": (tmp_path, {})})
    monitor, out = _monitor(tmp_path, ["ClinicalExampleGen"])
    monitor.poll()
    assert monitor.runs["ClinicalExampleGen"].figure == (
        "412 kept, 3 rejected (empty_text 2, too_long 1); spans 3 version 1, 4"
    )
    assert out.getvalue().rstrip().endswith(monitor.runs["ClinicalExampleGen"].figure)

    del summary["spans"], summary["rejected_by_reason"]
    summary.update({"rejected": 0, "kept_examples": 7})
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    report = monitor.runs["ClinicalExampleGen"].outputs["report"]
    assert component_figures.ingest_figure({"report": report}) == "7 kept, 0 rejected"


def test_tokenizer_figure_says_size_unk_rate_and_whether_the_vocabulary_was_reused(tmp_path):
    run = FakeRun(tmp_path / "metadata.sqlite")
    properties = {"vocab_size": 2000, "unk_rate": 4.8e-05, "pieces_per_word": 1.729}
    run.execution("SentencePieceTokenizer", "COMPLETE", {"tokenizer": (tmp_path, properties)})
    run.execution("finetune", "COMPLETE", {"tokenizer": (tmp_path, {**properties, "reused": 1})})
    run.execution("pretrain", "COMPLETE", {"tokenizer": (tmp_path, {**properties, "reused": 0})})
    monitor, _ = _monitor(tmp_path, ["SentencePieceTokenizer"])
    monitor.poll()
    figure = monitor.runs["SentencePieceTokenizer"].figure
    assert figure == "vocabulary 2000, <unk> 0.0048%, 1.73 pieces/word"
    outputs = {n: monitor.runs[n].outputs for n in ("finetune", "pretrain")}
    assert component_figures.tokenizer_figure(outputs["finetune"]) == f"{figure}; reused vocabulary"
    assert component_figures.tokenizer_figure(outputs["pretrain"]) == f"{figure}; trained"


def test_pretraining_examples_figure_counts_instances_per_split(tmp_path):
    run = FakeRun(tmp_path / "metadata.sqlite")
    properties = {"instances_train": 12040, "instances_eval": 150, "vocabulary_sha256": "ab"}
    run.execution("PretrainingExamples", "COMPLETE", {"examples": (tmp_path, properties)})
    monitor, _ = _monitor(tmp_path, ["PretrainingExamples"])
    monitor.poll()
    assert monitor.runs["PretrainingExamples"].figure == "12,040 train instances, 150 eval"
    assert component_figures.pretraining_examples_figure({}) == ""


def test_trainer_figures_read_training_json_and_tolerate_missing_keys(tmp_path):
    finetune = {
        "metric": "micro_f1",
        "steps_trained": 30,
        "best_step": 20,
        "best": 0.4123,
        "evals": [{"step": 10, "loss": 3.2, "metric": 0.3}, {"step": 30, "loss": 2.3141, "metric": 0.41}],
        "start": "warm start from the last blessed model",
    }
    run = FakeRun(tmp_path / "metadata.sqlite")
    run.execution(
        "finetune", "COMPLETE", {"model_run": (_folder(tmp_path, "ft", {"training.json": finetune}), {})}
    )
    pretrain = {"steps_trained": 20, "final_loss": 7.0123, "eval_mlm_accuracy": 0.0512, "backend": "jax"}
    run.execution(
        "pretrain", "CACHED", {"model_run": (_folder(tmp_path, "pt", {"training.json": pretrain}), {})}
    )
    monitor, out = _monitor(tmp_path, ["pretrain", "finetune"])
    monitor.poll()
    assert monitor.runs["finetune"].figure == (
        "30 steps, final loss 2.31, best micro_f1 0.412 at step 20; warm start from the last blessed model"
    )
    assert monitor.runs["pretrain"].figure == "20 steps, final loss 7.01, eval MLM accuracy 0.0512 (jax)"
    assert [monitor.runs[n].status for n in ("pretrain", "finetune")] == ["cached", "ran"]
    assert out.getvalue().splitlines()[-1].endswith(monitor.runs["pretrain"].figure)

    only_steps = _folder(tmp_path, "partial", {"training.json": {"steps_trained": 5, "evals": [{"step": 5}]}})
    no_file = _folder(tmp_path, "none", {})
    artifacts = {n: monitor.runs[n].outputs["model_run"][0] for n in ("pretrain", "finetune")}
    artifacts["pretrain"].uri, artifacts["finetune"].uri = str(only_steps), str(no_file)
    assert component_figures.trainer_figure({"model_run": [artifacts["pretrain"]]}) == "5 steps"
    assert component_figures.trainer_figure({"model_run": [artifacts["finetune"]]}) == ""


def test_evaluator_figure_is_the_blessing_and_the_candidates_overall_metric(tmp_path):
    evaluation = tmp_path / "evaluation"
    _write_metrics(
        evaluation,
        [
            ("Discharge Summary", "candidate", 0.9, False),  # a slice, not the whole split
            ("", "baseline", 0.5, False),
            ("", "candidate", 0.1, True),  # the difference against the baseline
            ("", "candidate", 0.6123, False),
        ],
    )
    run = FakeRun(tmp_path / "metadata.sqlite")
    outputs = {"evaluation": (evaluation, {}), "blessing": (tmp_path, {"blessed": 1})}
    run.execution("Evaluator", "COMPLETE", outputs)
    monitor, _ = _monitor(tmp_path, ["Evaluator"], main_metric="micro_f1")
    monitor.poll()
    assert monitor.runs["Evaluator"].figure == "blessed, micro_f1 0.612"

    blessing = monitor.runs["Evaluator"].outputs["blessing"][0]
    blessing.custom_properties["blessed"].int_value = 0
    figure = component_figures.evaluator_figure({"blessing": [blessing], "evaluation": []}, "micro_f1")
    assert figure == "not blessed"


def test_headline_metric_is_the_first_thresholded_metric_of_the_eval_config():
    from pipeline.configs import TINY, PipelineConfig
    from pipeline.pipeline import eval_config

    def headline(**changes):
        return component_figures.headline_metric(eval_config(PipelineConfig(**{**TINY, **changes})))

    assert headline() == "micro_f1"
    assert headline(blessing_metric="macro_f1") == "multi_label_macro_f1"
    assert headline(task="note_classification") == "sparse_categorical_accuracy"


def test_pusher_and_model_card_lines_and_the_summary(tmp_path, capfd):
    run = FakeRun(tmp_path / "metadata.sqlite")
    card = _folder(tmp_path, "card", {})
    pushed = {"pushed": 1, "pushed_version": "3", "pushed_destination": str(tmp_path / "serving" / "3")}
    nodes = ["ModelCard", "Pusher", "finetune"]
    with console.LocalRunConsole(str(tmp_path), str(tmp_path / "metadata.sqlite"), PIPELINE) as local_run:
        local_run.watch(nodes)
        local_run.monitor.since_ms = 0
        run.execution("ModelCard", "COMPLETE", {"model_card": (card, {})})
        run.execution("Pusher", "COMPLETE", {"pushed_model": (tmp_path, pushed)})
    local_run.finish(pushed=pushed["pushed_destination"])
    lines = capfd.readouterr().out.splitlines()
    table = lines[[line.split()[0] if line else "" for line in lines].index("component") :]
    assert table[1].split()[:2] == ["ModelCard", "ran"] and table[1].endswith(f"card in {card}")
    assert table[2].split()[:2] == ["Pusher", "ran"] and table[2].endswith("pushed version 3")
    assert table[3].split() == ["finetune", "not", "run"]
    assert f"pushed model: {tmp_path / 'serving' / '3'}" in table
    assert f"model card: {card / 'model_card.md'}" in table
    assert f"log: {local_run.log_path}" in table
    assert table[-1] == f"ML Metadata: {tmp_path / 'metadata.sqlite'}"
    assert component_figures.pusher_figure({"pushed_model": [_artifact(run, {"pushed": 0})]}) == "not pushed"


def _artifact(run: FakeRun, properties: dict):
    artifact = run.mlmd.Artifact(uri="unused")
    for name, value in properties.items():
        artifact.custom_properties[name].int_value = value
    return artifact


# -- progress ----------------------------------------------------------------------------------------


def _fit(callback, epochs=2, steps=3, initial_epoch=0):
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2).repeat()
    model.fit(
        dataset,
        epochs=epochs,
        steps_per_epoch=steps,
        initial_epoch=initial_epoch,
        callbacks=[callback],
        verbose=0,
    )


def test_progress_callback_appends_steps_total_and_loss_to_the_file_the_environment_names(
    tmp_path, monkeypatch
):
    from components.trainer.progress import PROGRESS_ENV, ProgressFile

    assert PROGRESS_ENV == console.PROGRESS_ENV
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    _fit(ProgressFile("pretrain", every_s=0.0))
    records, offset = console.read_progress(str(path), 0)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert {r["node"] for r in records} == {"pretrain"} and {r["total"] for r in records} == {6}
    assert all(isinstance(r["loss"], float) for r in records)
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    assert offset == path.stat().st_size

    # A resumed fit counts from its checkpoint's step; lines are spaced, the first and last kept.
    _fit(ProgressFile("finetune", total_steps=9, every_s=3600.0), epochs=3, initial_epoch=1)
    resumed, _ = console.read_progress(str(path), offset)
    assert [(r["node"], r["step"], r["total"]) for r in resumed] == [("finetune", 4, 9), ("finetune", 9, 9)]

    monkeypatch.delenv(PROGRESS_ENV)
    before = path.stat().st_size
    _fit(ProgressFile("pretrain", every_s=0.0))  # no file named: nothing written
    assert path.stat().st_size == before


def test_a_progress_line_not_yet_ended_is_read_once_it_is(tmp_path):
    path = tmp_path / "progress.jsonl"
    line = json.dumps({"node": "pretrain", "step": 1, "total": 2, "loss": 1.0, "time": 1.0})
    path.write_text(line + "\nnot json\n" + line[:10], encoding="utf-8")
    records, offset = console.read_progress(str(path), 0)
    assert [r["step"] for r in records] == [1]
    with path.open("a", encoding="utf-8") as f:
        f.write(line[10:] + "\n")
    records, _ = console.read_progress(str(path), offset)
    assert [r["step"] for r in records] == [1]
    assert console.read_progress(str(tmp_path / "absent"), 0) == ([], 0)


def test_progress_line_has_rate_time_left_and_loss():
    first = {"node": "pretrain", "step": 20, "total": 200, "loss": 9.0, "time": 100.0}
    last = {"node": "pretrain", "step": 120, "total": 200, "loss": 7.1234, "time": 100.0 + 100 / 41.2}
    assert console.format_progress("pretrain", first, last) == (
        "  pretrain  step 120/200  41.2 steps/s  about 2 s left  loss 7.12"
    )
    slow = {**last, "time": 100.0 + 100 / 0.05}
    assert "0.05 steps/s  about 27 min left" in console.format_progress("pretrain", first, slow)
    assert console.format_duration(2 * 3600 + 5 * 60) == "2 h 5 min"


def test_progress_lines_are_spaced_per_node_while_it_runs(tmp_path):
    path = tmp_path / "progress.jsonl"
    run = FakeRun(tmp_path / "metadata.sqlite")
    monitor, out = _monitor(tmp_path, ["pretrain"], progress_file=str(path))
    pretrain = run.execution("pretrain", "RUNNING")

    def append(step: int, when: float) -> None:
        with path.open("a", encoding="utf-8") as f:
            f.write(
                json.dumps({"node": "pretrain", "step": step, "total": 100, "loss": 2.0, "time": when}) + "\n"
            )

    append(1, 1000.0)
    monitor.poll(now=1000.0)  # one record: no rate yet
    append(11, 1002.0)
    monitor.poll(now=1002.0)
    append(21, 1004.0)
    monitor.poll(now=1004.0)  # within 10 s of the last progress line
    append(61, 1012.0)
    monitor.poll(now=1012.0)
    progress = [line for line in out.getvalue().splitlines() if "step" in line]
    assert progress == [
        "  pretrain  step 11/100  5 steps/s  about 18 s left  loss 2",
        "  pretrain  step 61/100  5 steps/s  about 8 s left  loss 2",
    ]
    run.set_state(pretrain, "COMPLETE")
    append(100, 1020.0)
    monitor.poll(now=1030.0)  # ended: its end line, no more progress
    assert "step" not in out.getvalue().splitlines()[-1]


def test_progress_is_rewritten_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = console.Console(Terminal())
    screen.status("  pretrain  step 1/2")
    screen.status("  pretrain  step 2/2")
    screen.line("  pretrain  ran")
    assert screen.stream.getvalue() == (
        "\r\x1b[K  pretrain  step 1/2\r\x1b[K  pretrain  step 2/2\r\x1b[K  pretrain  ran\n"
    )


# -- output redirection ------------------------------------------------------------------------------


def test_library_output_goes_to_the_log_and_the_console_lines_to_stdout(tmp_path, capfd):
    from absl import logging as absl_logging

    log_path = tmp_path / "logs" / "run.log"
    stdout_before = os.fstat(1).st_ino, os.fstat(2).st_ino
    with console.output_to_file(str(log_path)) as screen:
        os.write(2, b"C-level write to descriptor 2\n")
        os.write(1, b"C-level write to descriptor 1\n")
        print("a Python print")
        warnings.warn("a synthetic library warning", UserWarning, stacklevel=1)
        absl_logging.info("an absl info line")
        screen.write("a console line\n")
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == stdout_before
    os.write(2, b"after the run\n")
    shown = capfd.readouterr()
    log = log_path.read_text(encoding="utf-8")
    for text in (
        "descriptor 2",
        "descriptor 1",
        "a Python print",
        "a synthetic library warning",
        "absl info",
    ):
        assert text in log and text not in shown.out + shown.err
    assert shown.out == "a console line\n"
    assert shown.err == "after the run\n"


def test_descriptors_are_restored_when_the_run_is_interrupted(tmp_path, capfd):
    with pytest.raises(KeyboardInterrupt), console.output_to_file(str(tmp_path / "run.log")):
        os.write(2, b"noise\n")
        raise KeyboardInterrupt
    os.write(2, b"back on the console\n")
    assert capfd.readouterr().err == "back on the console\n"
    assert (tmp_path / "run.log").read_text(encoding="utf-8") == "noise\n"


def test_verbose_leaves_the_output_on_the_console_and_adds_the_component_lines(tmp_path, capfd):
    run = FakeRun(tmp_path / "metadata.sqlite")
    local_run = console.LocalRunConsole(
        str(tmp_path), str(tmp_path / "metadata.sqlite"), PIPELINE, verbose=True, poll_s=0.05
    )
    with local_run:
        local_run.watch(["StatisticsGen"])
        local_run.monitor.since_ms = 0
        os.write(2, b"I tensorflow noise\n")
        run.execution("StatisticsGen", "COMPLETE")
    local_run.finish(pushed=None)
    shown = capfd.readouterr()
    assert shown.err == "I tensorflow noise\n"
    assert "StatisticsGen" in shown.out and "nothing pushed (not blessed)" in shown.out
    assert local_run.log_path is None and "log:" not in shown.out
    assert not list((tmp_path / "logs").glob("*.log"))


def test_log_path_is_per_run_under_the_output_folder():
    import datetime

    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    path = console.new_log_path("/runs/a", when)
    assert path == os.path.join("/runs/a", "logs", "run-20260102T030405Z.log")
    assert console.progress_path(path) == os.path.join(
        "/runs/a", "logs", "run-20260102T030405Z.progress.jsonl"
    )


# -- failures ----------------------------------------------------------------------------------------


def test_an_error_is_told_in_one_line():
    assert console.one_line_error(ValueError("vocabulary too small\nthe details")) == (
        "ValueError: vocabulary too small"
    )
    try:
        try:
            raise KeyError("spans")
        except KeyError as cause:
            raise RuntimeError() from cause
    except RuntimeError as error:
        assert console.one_line_error(error) == "KeyError: 'spans'"
    assert (
        len(console.one_line_error(ValueError("x" * 1000))) == len("ValueError: ") + console.MAX_ERROR_CHARS
    )
    assert console.failure_lines(KeyboardInterrupt(), "pretrain", None) == [
        "pipeline interrupted during pretrain",
        "traceback above",
    ]


def test_a_failed_component_is_named_with_its_error_and_the_log(tmp_path, capfd):
    run = FakeRun(tmp_path / "metadata.sqlite")
    local_run = console.LocalRunConsole(
        str(tmp_path), str(tmp_path / "metadata.sqlite"), PIPELINE, poll_s=0.05
    )
    with pytest.raises(console.PipelineFailed) as failed, local_run:
        local_run.watch(["StatisticsGen", "pretrain", "finetune"])
        local_run.monitor.since_ms = 0
        run.execution("StatisticsGen", "COMPLETE")
        pretrain = run.execution("pretrain", "RUNNING")
        os.write(2, b"I tensorflow noise\n")
        run.set_state(pretrain, "FAILED")
        raise ValueError("init_checkpoint has a vocabulary of 96\nmore detail")
    shown = capfd.readouterr()
    assert failed.value.node == "pretrain" and failed.value.log_path == local_run.log_path
    assert isinstance(failed.value.__cause__, ValueError)
    lines = shown.out.splitlines()
    assert lines[-2] == "pipeline failed in pretrain: ValueError: init_checkpoint has a vocabulary of 96"
    assert lines[-1] == f"full traceback: {local_run.log_path}"
    assert "more detail" not in shown.out and "noise" not in shown.out + shown.err
    table = lines[[line.split()[0] if line else "" for line in lines].index("component") :]
    assert [row.split()[:2] for row in table[1:4]] == [
        ["StatisticsGen", "ran"],
        ["pretrain", "failed"],
        ["finetune", "not"],
    ]
    log = Path(local_run.log_path).read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in log and "more detail" in log and "tensorflow noise" in log


@pytest.mark.parametrize(
    ("error", "status", "told"),
    [
        (FileNotFoundError("input_base does not exist"), "failed", "pipeline failed in ClinicalExampleGen"),
        (KeyboardInterrupt(), "stopped", "pipeline interrupted during ClinicalExampleGen"),
    ],
)
def test_a_node_left_running_is_the_one_told(tmp_path, capfd, error, status, told):
    """A driver that raises leaves its execution RUNNING; an interrupt too. The run's end says so."""
    run = FakeRun(tmp_path / "metadata.sqlite")
    local_run = console.LocalRunConsole(
        str(tmp_path), str(tmp_path / "metadata.sqlite"), PIPELINE, poll_s=0.05
    )
    expected = console.PipelineFailed if isinstance(error, Exception) else KeyboardInterrupt
    with pytest.raises(expected), local_run:
        local_run.watch(["ClinicalExampleGen", "StatisticsGen"])
        local_run.monitor.since_ms = 0
        run.execution("ClinicalExampleGen", "RUNNING")
        raise error
    lines = capfd.readouterr().out.splitlines()
    assert lines[-2].startswith(told)
    ends = [line.split()[:2] for line in lines if line.startswith("  ClinicalExampleGen")]
    assert ends == [["ClinicalExampleGen", "started"], ["ClinicalExampleGen", status]]
    assert [line.split()[:2] for line in lines if line.startswith("StatisticsGen")] == [
        ["StatisticsGen", "not"]
    ]
