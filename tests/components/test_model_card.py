"""The model card on synthetic runs of every task: its figures are `components/scores.py`'s with the
intervals `scores.bootstrap` gives, they stand beside the Evaluator's (read from TFMA's own files), the
card names the blessing and its failed thresholds, the plots are PNG files; the executor's `Do()` on
temp-dir artifacts, and the Pusher copying the card into the version it pushes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components import scores
from components.model_card import card as card_lib
from components.model_card import figures as figures_lib
from components.model_card import report as report_lib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOTE_TYPES = ("Consult", "Discharge summary", "Radiology")
ENTITY_TYPES = ("Disease", "Drug")


# -- synthetic runs -------------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def _slices(rng: np.random.Generator, notes: int) -> dict[str, np.ndarray]:
    return {
        "note_type": np.array(rng.choice(NOTE_TYPES, notes)),
        "length_bucket": rng.integers(0, 3, notes).astype(np.int64),
    }


def _single_label(task: str, names: tuple[str, ...], notes: int = 90, seed: int = 0) -> dict[str, np.ndarray]:
    """A model that is right about two times in three; the last class never occurs in the gold."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, len(names) - 1, notes).astype(np.int64)
    logits = rng.normal(0.0, 1.0, (notes, len(names)))
    logits[np.arange(notes), targets] += np.where(rng.random(notes) < 0.67, 3.0, 0.0)
    arrays = {"label_names": np.array(names), "probabilities": _softmax(logits), "targets": targets}
    return {**arrays, **_slices(rng, notes)} if task == figures_lib.NOTE_TASK else arrays


def _multi_label(notes: int = 120, labels: int = 6, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((notes, labels)) < 0.3).astype(np.int64)
    targets[:, -1] = 0  # a label with no eval example
    noise = rng.normal(0.0, 0.25, (notes, labels))
    probabilities = np.clip(0.25 + 0.45 * targets + noise, 0.001, 0.999).astype(np.float32)
    return {
        "label_names": np.array([f"Specialty {i}" for i in range(labels)]),
        "probabilities": probabilities,
        "targets": targets,
        "thresholds": np.linspace(0.4, 0.6, labels).astype(np.float32),
        **_slices(rng, notes),
    }


def _entities(rows: int = 60, seed: int = 2) -> dict[str, np.ndarray]:
    """Sentences of 5 to 14 words with an entity or two each; the prediction drops or retypes some."""
    rng = np.random.default_rng(seed)
    names = ["O"] + [f"{prefix}-{kind}" for kind in ENTITY_TYPES for prefix in ("B", "I")]
    gold_rows, predicted_rows = [], []
    for _ in range(rows):
        gold = np.zeros(rng.integers(5, 15), dtype=np.int64)
        for _ in range(rng.integers(1, 3)):
            kind, start = rng.integers(0, len(ENTITY_TYPES)), rng.integers(0, len(gold) - 2)
            gold[start] = 1 + 2 * kind
            gold[start + 1 : start + 1 + rng.integers(0, 2)] = 2 + 2 * kind
        predicted = gold.copy()
        flip = rng.random(len(gold)) < 0.12
        predicted[flip] = rng.integers(0, len(names), flip.sum())
        gold_rows.append(gold)
        predicted_rows.append(predicted)
    gold, predicted = np.concatenate(gold_rows), np.concatenate(predicted_rows)
    confidence = np.where(predicted == gold, 0.9, 0.55).astype(np.float32)
    return {
        "label_names": np.array(names),
        "gold": gold,
        "predicted": predicted,
        "confidence": confidence,
        "row_lengths": np.array([len(row) for row in gold_rows], dtype=np.int64),
    }


RUNS = {
    figures_lib.NOTE_TASK: lambda: _single_label(
        figures_lib.NOTE_TASK, ("Cardiology", "Neurology", "Orthopedic", "Urology")
    ),
    figures_lib.PAIR_TASK: lambda: _single_label(figures_lib.PAIR_TASK, ("yes", "no", "maybe")),
    figures_lib.MULTI_LABEL_TASK: _multi_label,
    figures_lib.TOKEN_TASK: _entities,
}


def _direct_scores(
    task: str, arrays: dict[str, np.ndarray]
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The figures `components/scores.py` computes on the whole arrays: overall, and F1 per class."""
    if task == figures_lib.MULTI_LABEL_TASK:
        found = scores.multi_label_scores(arrays["targets"], arrays["probabilities"] >= arrays["thresholds"])
        return {k: found[k] for k in figures_lib.OVERALL_FIGURES[task]}, found["per_label"]
    if task == figures_lib.TOKEN_TASK:
        gold, predicted = figures_lib.token_rows(arrays)
        found = scores.entity_scores(gold, predicted)
        overall = {f"entity_{k}": found[k] for k in ("f1", "precision", "recall")}
        overall["token_accuracy"] = float((arrays["gold"] == arrays["predicted"]).mean())
        per_type = {
            k: [found["by_type"].get(t, {}).get(k, 0.0) for t in range(2)]
            for k in ("precision", "recall", "f1")
        }
        return overall, per_type
    found = scores.single_label_scores(
        arrays["targets"], arrays["probabilities"].argmax(axis=1), len(arrays["label_names"])
    )
    return {"accuracy": found["accuracy"], "macro_f1": found["macro_f1"]}, found["per_class"]


EVALUATOR_TASK_NAMES = card_lib.EVALUATOR_NAMES


def _evaluator_figures(task: str, arrays: dict[str, np.ndarray]) -> dict:
    """What the Evaluator reports for these predictions (it scores the same split with the same rules)."""
    overall, per_class = _direct_scores(task, arrays)
    names = card_lib.EVALUATOR_NAMES[task]
    class_names = card_lib.EVALUATOR_CLASS_NAMES[task]
    return {
        "overall": {names[k]: v for k, v in overall.items()}
        | {"example_count": float(len(arrays["targets" if "targets" in arrays else "row_lengths"]))},
        "per_class": {class_names[k]: dict(enumerate(v)) for k, v in per_class.items()},
        "slices": {},
        "baseline": {},
    }


def _inputs(task: str, arrays: dict | None, **changes) -> card_lib.CardInputs:
    evaluator = _evaluator_figures(task, arrays) if arrays is not None else {"overall": {"micro_f1": 0.5}}
    fields = dict(
        model={"uri": "pipeline/finetune/model/9", "artifact_id": 9, "sha256": "ab" * 32},
        model_run_uri="pipeline/finetune/model_run/9",
        training={
            "task": task,
            "metric": figures_lib.OVERALL_FIGURES[task][0],
            "steps_planned": 40,
            "steps_trained": 30,
            "best_step": 20,
            "best": 0.61,
            "stopped_early": True,
            "seed": 42,
            "warmup_steps": 4,
            "clipnorm": 1.0,
            "patience": 2,
            "evals": [
                {
                    "step": s,
                    "loss": 2.0 / s if s > 10 else None,
                    "learning_rate": 1e-3,
                    "metric": 0.3 + s / 100,
                }
                for s in (10, 20, 30)
            ],
        },
        predictions=arrays,
        reading={
            "window_pooling": "mean",
            "eval_metric": "accuracy",
            "eval_by_window_pooling": {"mean": 0.6, "max": 0.5},
        },
        fine_tuning={
            "custom_config": {"task": task, "batch_size": 8, "learning_rate": 1e-3},
            "train_steps": 40,
        },
        pretraining={
            "uri": "pipeline/pretrain/model/7",
            "artifact_id": 7,
            "custom_config": {"preset": "tiny", "batch_size": 8, "seed": 42},
            "train_steps": 20,
        },
        corpus={
            "input_base": "corpus.csv",
            "input_format": "csv",
            "splits": {"train": 8, "eval": 1, "test": 1},
        },
        ingest={
            "input_format": "csv",
            "input_files": 1,
            "input_records": 590,
            "kept_examples": 263,
            "duplicates_collapsed": 324,
            "rejected": 3,
            "skipped_not_notes": 0,
            "rejected_by_reason": {"bad_utf8": 1, "empty_text": 1, "truncated_record": 1},
            "examples_per_split": {"train": 210, "eval": 27, "test": 26},
            "phi_replacements": {"[DATE]": 41, "[NAME]": 17},
        },
        ingest_uri="pipeline/ClinicalExampleGen/report/1",
        tokenizer={
            "uri": "pipeline/SentencePieceTokenizer/tokenizer/3",
            "vocab_size": 2000,
            "unk_rate": 0.01,
        },
        evaluator={"uri": "pipeline/Evaluator/evaluation/11", **evaluator},
        validation={"ok": True, "rubber_stamp": True, "failures": [], "missing_slices": []},
        blessing={"uri": "pipeline/Evaluator/blessing/11", "blessed": True},
        baseline=None,
    )
    return card_lib.CardInputs(**{**fields, **changes})


# -- figures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", figures_lib.TASKS)
def test_the_figures_are_those_of_scores_py_with_intervals_around_them(task):
    arrays = RUNS[task]()
    found = figures_lib.score(task, arrays, samples=300)
    overall, per_class = _direct_scores(task, arrays)
    for name, value in overall.items():
        figure = found["overall"][name]
        assert figure["value"] == pytest.approx(value, abs=1e-12), name
        assert figure["low"] <= figure["value"] <= figure["high"], name
    assert found["figure_names"] == list(figures_lib.OVERALL_FIGURES[task])
    for k, row in enumerate(found["per_class"]):
        for name in figures_lib.CLASS_FIGURES:
            assert row[name]["value"] == pytest.approx(per_class[name][k], abs=1e-12), (row["name"], name)
            assert (
                row[name]["low"] <= row[name]["value"] + 1e-12
                and row[name]["value"] <= row[name]["high"] + 1e-12
            )
    assert 0.0 <= found["calibration"]["ece"] <= 1.0
    assert sum(b["count"] for b in found["calibration"]["bins"]) == found["calibration"]["predictions"]


def test_each_interval_is_the_one_scores_bootstrap_gives():
    arrays = _multi_label()
    found = figures_lib.score(figures_lib.MULTI_LABEL_TASK, arrays, samples=200, seed=5)
    predicted = arrays["probabilities"] >= arrays["thresholds"]
    for name in ("micro_f1", "subset_accuracy"):
        expected = scores.bootstrap(
            len(predicted),
            lambda rows, name=name: scores.multi_label_scores(arrays["targets"][rows], predicted[rows])[name],
            samples=200,
            seed=5,
        )
        assert (found["overall"][name]["low"], found["overall"][name]["high"]) == pytest.approx(
            expected, abs=1e-12
        )
    rows = figures_lib.token_rows(entities := _entities())
    expected = scores.bootstrap(
        len(rows[0]),
        lambda picked: scores.entity_scores([rows[0][i] for i in picked], [rows[1][i] for i in picked])["f1"],
        samples=100,
    )
    found = figures_lib.score(figures_lib.TOKEN_TASK, entities, samples=100)["overall"]["entity_f1"]
    assert (found["low"], found["high"]) == pytest.approx(expected, abs=1e-12)


def test_slices_are_scored_on_their_own_notes():
    arrays = _single_label(figures_lib.NOTE_TASK, ("a", "b", "c"))
    found = figures_lib.score(figures_lib.NOTE_TASK, arrays, samples=50)
    by_type = {row["value"]: row for row in found["slices"]["note_type"]}
    assert set(by_type) == set(NOTE_TYPES) and sum(r["units"] for r in by_type.values()) == 90
    radiology = arrays["note_type"] == "Radiology"
    expected = scores.single_label_scores(
        arrays["targets"][radiology], arrays["probabilities"][radiology].argmax(axis=1), 3
    )
    assert by_type["Radiology"]["overall"]["accuracy"]["value"] == pytest.approx(expected["accuracy"])
    assert [row["value"] for row in found["slices"]["length_bucket"]] == ["0", "1", "2"]
    assert found["note_types"] == {kind: int((arrays["note_type"] == kind).sum()) for kind in NOTE_TYPES}


def test_reliability_bins_and_expected_calibration_error():
    table = figures_lib.reliability(np.array([0.05, 0.15, 0.95, 1.0]), np.array([0, 1, 1, 1]))
    assert [b["count"] for b in table["bins"]] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    # |0 - 0.05| + |1 - 0.15| + |2 - 1.95| over 4 predictions
    assert table["ece"] == pytest.approx((0.05 + 0.85 + 0.05) / 4)
    assert table["bins"][2]["confidence"] is None


def test_predictions_that_break_the_contract_are_refused():
    arrays = _multi_label()
    with pytest.raises(ValueError, match="lacks \\['thresholds'\\]"):
        figures_lib.score(
            figures_lib.MULTI_LABEL_TASK, {k: v for k, v in arrays.items() if k != "thresholds"}
        )
    entities = _entities()
    with pytest.raises(ValueError, match="row_lengths do not agree"):
        figures_lib.score(figures_lib.TOKEN_TASK, {**entities, "row_lengths": entities["row_lengths"][:-1]})


# -- the card -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", figures_lib.TASKS)
def test_the_card_names_its_figures_beside_the_evaluators_and_renders_them(task, tmp_path):
    arrays = RUNS[task]()
    card = card_lib.build_card(_inputs(task, arrays), samples=200)
    card["report"] = report_lib.write_report(card, str(tmp_path / card_lib.REPORT_DIR))
    card_lib.write_files(card, str(tmp_path))
    stored = json.loads((tmp_path / card_lib.CARD_FILE).read_text())
    markdown = (tmp_path / card_lib.MARKDOWN_FILE).read_text()

    overall, _ = _direct_scores(task, arrays)
    headline = figures_lib.OVERALL_FIGURES[task][0]
    figure = stored["evaluation"]["overall"][headline]
    assert figure["value"] == pytest.approx(overall[headline], abs=1e-12)
    assert figure["low"] <= figure["value"] <= figure["high"]
    assert figure["evaluator"] == pytest.approx(overall[headline], abs=1e-12)
    assert stored["evaluation"]["difference_from_evaluator"] < card_lib.AGREEMENT and not stored["problems"]
    assert f"{figure['value']:.3f} ({figure['low']:.3f} to {figure['high']:.3f})" in markdown
    assert figure["evaluator_name"] in markdown

    assert (
        stored["blessing"]["decision"] == "blessed" and stored["blessing"]["baseline"] == card_lib.NO_BASELINE
    )
    assert "Blessing: **blessed**" in markdown and card_lib.NO_BASELINE in markdown
    assert stored["training_data"]["phi_replacements"] == {"[DATE]": 41, "[NAME]": 17}
    assert stored["training_data"]["rejected_by_reason"]["bad_utf8"] == 1
    assert stored["pretraining"]["preset"] == "tiny" and stored["pretraining"]["steps"] == 20
    tuning = stored["fine_tuning"]
    assert (tuning["steps_planned"], tuning["steps_trained"], tuning["best_step"]) == (40, 30, 20)
    assert tuning["stopped_early"] is True and tuning["seed"] == 42
    assert stored["tokenizer"]["vocab_size"] == 2000
    assert "medical device" in markdown
    assert any("Small eval split" in item for item in stored["limitations"])
    if task != figures_lib.TOKEN_TASK:
        absent = stored["evaluation"]["per_class"][-1]
        assert absent["support"] == 0
        assert any(absent["name"] in item and "no example" in item for item in stored["limitations"])

    for name, path in stored["report"].items():
        png = (tmp_path / path).read_bytes()
        assert png.startswith(PNG_SIGNATURE), name
        assert f"]({path})" in markdown
    expected_plots = {"training_curves", "reliability"} | (
        {"confusion_matrix"}
        if task in (figures_lib.NOTE_TASK, figures_lib.PAIR_TASK)
        else {"per_class_scores"}
    )
    assert set(stored["report"]) == expected_plots


def test_the_plots_are_images_matplotlib_reads_back(tmp_path):
    import matplotlib.image

    card = card_lib.build_card(_inputs(figures_lib.NOTE_TASK, RUNS[figures_lib.NOTE_TASK]()), samples=50)
    written = report_lib.write_report(card, str(tmp_path / "report"))
    for path in written.values():
        pixels = matplotlib.image.imread(tmp_path / path)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_a_failed_blessing_names_the_thresholds_and_the_baseline():
    arrays = _multi_label()
    failure = {
        "metric": "micro_f1",
        "slice": "overall",
        "value": 0.41,
        "threshold": "value >= 0.99",
        "message": "",
    }
    inputs = _inputs(
        figures_lib.MULTI_LABEL_TASK,
        arrays,
        validation={"ok": False, "rubber_stamp": False, "failures": [failure], "missing_slices": []},
        blessing={
            "uri": "b/12",
            "blessed": False,
            "baseline_uri": "pipeline/finetune/model/5",
            "baseline_id": 5,
        },
        baseline={"uri": "pipeline/finetune/model/5", "artifact_id": 5},
    )
    card = card_lib.build_card(inputs, samples=50)
    markdown = card_lib.render_markdown(card)
    assert card["blessing"]["blessed"] is False and card["blessing"]["failed_thresholds"] == [failure]
    assert card["blessing"]["baseline"] == {"uri": "pipeline/finetune/model/5", "artifact_id": 5}
    assert "**not blessed**" in markdown and "value >= 0.99" in markdown
    assert "pipeline/finetune/model/5" in markdown


def test_a_disagreement_with_the_evaluator_is_said_with_its_cause():
    arrays = _single_label(figures_lib.NOTE_TASK, ("a", "b", "c"))
    arrays["targets"][:5] = -1  # notes with no class: the card leaves them out
    inputs = _inputs(figures_lib.NOTE_TASK, arrays)
    right = (arrays["probabilities"].argmax(axis=1) == arrays["targets"]).sum()
    inputs.evaluator["overall"]["sparse_categorical_accuracy"] = right / len(arrays["targets"])
    card = card_lib.build_card(inputs, samples=50)
    assert card["evaluation"]["difference_from_evaluator"] > card_lib.AGREEMENT
    assert any("5 eval notes have no class" in problem for problem in card["problems"])
    assert any("5 eval notes have no class" in item for item in card["limitations"])
    inputs.evaluator["overall"]["example_count"] = 91.0
    card = card_lib.build_card(inputs, samples=50)
    assert "the Evaluator scored 91 eval notes, the Trainer's predictions hold 90" in card["problems"]


def test_a_run_without_the_trainers_files_still_gets_a_card_that_says_so(tmp_path):
    inputs = _inputs(figures_lib.MULTI_LABEL_TASK, None, training=None, reading=None)
    card = card_lib.build_card(inputs)
    card["report"] = report_lib.write_report(card, str(tmp_path / "report"))
    markdown = card_lib.render_markdown(card)
    assert any("training.json" in p for p in card["problems"]) and any(
        "eval_predictions" in p for p in card["problems"]
    )
    assert card["report"] == {} and "micro_f1" in markdown and "Problems while making this card" in markdown


# -- executor and Pusher --------------------------------------------------------------------------


def _write_evaluation(folder: Path, task: str, arrays: dict[str, np.ndarray], ok: bool) -> dict[str, float]:
    """TFMA's own files: `metrics` (MetricsForSlice: overall, per class, per note type) and
    `validations` (a ValidationResult), as the Evaluator writes them."""
    import tensorflow as tf
    from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2, validation_result_pb2

    figures = _evaluator_figures(task, arrays)
    records = []
    overall = metrics_for_slice_pb2.MetricsForSlice()
    for name, value in figures["overall"].items():
        entry = overall.metric_keys_and_values.add()
        entry.key.name = name
        entry.value.double_value.value = value
        baseline = overall.metric_keys_and_values.add()  # a baseline's figures never pass for the candidate's
        baseline.key.name, baseline.key.model_name = name, "baseline"
        baseline.value.double_value.value = 0.123
    for name, per_class in figures["per_class"].items():
        for class_id, value in per_class.items():
            entry = overall.metric_keys_and_values.add()
            entry.key.name = name
            entry.key.sub_key.class_id.value = class_id
            entry.value.double_value.value = value
    records.append(overall)
    if "note_type" in arrays:
        for kind in NOTE_TYPES:
            one = metrics_for_slice_pb2.MetricsForSlice()
            key = one.slice_key.single_slice_keys.add()
            key.column, key.bytes_value = "note_type", kind.encode()
            entry = one.metric_keys_and_values.add()
            entry.key.name = card_lib.EVALUATOR_NAMES[task][figures_lib.OVERALL_FIGURES[task][0]]
            entry.value.double_value.value = 0.5
            records.append(one)
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "metrics-00000-of-00001.tfrecord")) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    validation = validation_result_pb2.ValidationResult(validation_ok=ok, rubber_stamp=ok)
    if not ok:
        failures = validation.metric_validations_per_slice.add().failures
        failed = failures.add()
        failed.metric_key.name = "micro_f1"
        failed.metric_value.double_value.value = figures["overall"]["micro_f1"]
        failed.metric_threshold.value_threshold.lower_bound.value = 0.99
        dropped = failures.add()
        dropped.metric_key.name, dropped.metric_key.is_diff = "micro_f1", True
        dropped.metric_value.double_value.value = -0.2
        change = dropped.metric_threshold.change_threshold
        change.direction = config_pb2.MetricDirection.HIGHER_IS_BETTER
        change.absolute.value = -0.01
    with tf.io.TFRecordWriter(str(folder / "validations.tfrecord")) as writer:
        writer.write(validation.SerializeToString())
    return figures["overall"]


def _artifact(kind, uri: Path, **properties):
    uri.mkdir(parents=True, exist_ok=True)
    artifact = kind()
    artifact.uri = str(uri)
    for name, value in properties.items():
        if isinstance(value, int):
            artifact.set_int_custom_property(name, value)
        else:
            artifact.set_string_custom_property(name, value)
    return artifact


def _fake_model(uri: Path, content: bytes = b"graph") -> None:
    from components import model_layout

    client = uri / model_layout.CLIENT_COPY_DIR
    (client / "variables").mkdir(parents=True)
    (client / "saved_model.pb").write_bytes(content)
    (client / "variables" / "variables.index").write_bytes(b"index")
    (client / "assets.extra").mkdir()
    (client / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"warmup")


def _run_card_executor(tmp_path: Path, ok: bool = True):
    from tfx.types import standard_artifacts

    from components.clinical_example_gen.artifacts import IngestReport
    from components.model_card import executor
    from components.model_card.component import ModelCardArtifact
    from components.sentencepiece_tokenizer.component import SentencePieceModel

    task = figures_lib.MULTI_LABEL_TASK
    arrays = _multi_label()
    inputs = _inputs(task, arrays)
    report = _artifact(IngestReport, tmp_path / "report")
    (tmp_path / "report" / "summary.json").write_text(json.dumps(inputs.ingest))
    tokenizer = _artifact(SentencePieceModel, tmp_path / "tokenizer")
    (tmp_path / "tokenizer" / "stats.json").write_text(json.dumps({"vocab_size": 2000, "unk_rate": 0.01}))
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    _fake_model(tmp_path / "model")
    model_run = _artifact(standard_artifacts.ModelRun, tmp_path / "model_run")
    (tmp_path / "model_run" / "training.json").write_text(json.dumps(inputs.training))
    np.savez(tmp_path / "model_run" / "eval_predictions.npz", **arrays)
    evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
    (tmp_path / "evaluation").rmdir()
    evaluator = _write_evaluation(tmp_path / "evaluation", task, arrays, ok)
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing", blessed=int(ok))
    output = _artifact(ModelCardArtifact, tmp_path / "card")
    input_dict = {
        executor.INGEST_REPORT_KEY: [report],
        executor.TOKENIZER_KEY: [tokenizer],
        executor.PRETRAINED_MODEL_KEY: [_artifact(standard_artifacts.Model, tmp_path / "pretrained")],
        executor.MODEL_KEY: [model],
        executor.MODEL_RUN_KEY: [model_run],
        executor.EVALUATION_KEY: [evaluation],
        executor.BLESSING_KEY: [blessing],
        executor.BASELINE_MODEL_KEY: [],
    }
    properties = {
        executor.CORPUS_KEY: json.dumps(inputs.corpus),
        executor.PRETRAINING_KEY: json.dumps({"custom_config": {"preset": "tiny"}, "train_steps": 20}),
        executor.FINE_TUNING_KEY: json.dumps(inputs.fine_tuning),
        executor.BOOTSTRAP_SAMPLES_KEY: 200,
        executor.SEED_KEY: 0,
    }
    executor.Executor().Do(input_dict, {executor.MODEL_CARD_KEY: [output]}, properties)
    return output, model, blessing, evaluator


def test_the_executor_writes_the_card_from_the_runs_artifacts(tmp_path):
    output, _, _, evaluator = _run_card_executor(tmp_path, ok=False)
    folder = Path(output.uri)
    card = json.loads((folder / card_lib.CARD_FILE).read_text())
    micro = card["evaluation"]["overall"]["micro_f1"]
    assert micro["evaluator"] == evaluator["micro_f1"] and abs(micro["value"] - micro["evaluator"]) <= 1e-6
    assert micro["baseline"] == pytest.approx(0.123)
    by_type = {row["value"]: row for row in card["evaluation"]["slices"]["note_type"]}
    assert by_type["Radiology"]["overall"]["micro_f1"]["evaluator"] == 0.5
    assert card["evaluation"]["per_class"][0]["f1"]["evaluator"] is not None
    assert card["blessing"]["decision"] == "not blessed"
    failed = [(f["metric"], f["threshold"], f["value"]) for f in card["blessing"]["failed_thresholds"]]
    assert failed == [
        ("micro_f1", "value >= 0.99", micro["evaluator"]),
        ("micro_f1 change vs baseline", "change vs baseline >= -0.01", -0.2),
    ]
    assert card["model"]["sha256"] and card["pretraining"]["preset"] == "tiny"
    assert card["tokenizer"]["vocab_size"] == 2000
    assert output.get_int_custom_property("blessed") == 0
    assert output.get_float_custom_property("micro_f1") == pytest.approx(micro["value"])
    assert "not blessed" in (folder / card_lib.MARKDOWN_FILE).read_text()
    assert sorted(p.name for p in (folder / "report").iterdir()) == [
        "per_class_scores.png", "reliability.png", "training_curves.png",
    ]  # fmt: skip


def _push(tmp_path: Path, model, blessing, card, serving: Path):
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts, standard_component_specs
    from tfx.utils import proto_utils

    from components.pusher.executor import MODEL_CARD_KEY, Executor

    pushed = _artifact(
        standard_artifacts.PushedModel, tmp_path / f"pushed-{len(list(tmp_path.glob('pushed-*')))}"
    )
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving))
    )
    infra = _artifact(standard_artifacts.InfraBlessing, tmp_path / "infra", blessed=1)
    Executor().Do(
        {
            standard_component_specs.MODEL_KEY: [model],
            standard_component_specs.MODEL_BLESSING_KEY: [blessing],
            standard_component_specs.INFRA_BLESSING_KEY: [infra],
            MODEL_CARD_KEY: [card] if card is not None else [],
        },
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)},
    )
    return pushed


def test_the_pusher_puts_the_card_beside_the_model_it_pushes(tmp_path):
    from serving.versions import version_folders

    output, model, blessing, _ = _run_card_executor(tmp_path / "run")
    serving = tmp_path / "serving"
    pushed = _push(tmp_path, model, blessing, output, serving)
    version = pushed.get_string_custom_property("pushed_version")
    folder = serving / version / "assets.extra" / "model_card"
    card = json.loads((folder / card_lib.CARD_FILE).read_text())
    assert card["push"] == {"version": version, "destination": str(serving / version)}
    assert f"Pushed as version {version}" in (folder / card_lib.MARKDOWN_FILE).read_text()
    assert (folder / "report" / "reliability.png").read_bytes().startswith(PNG_SIGNATURE)
    assert pushed.get_string_custom_property("model_card") == str(folder)
    # The version is what it was: listed as a version, its warmup requests where TF Serving reads them.
    assert list(version_folders(str(serving))) == [int(version)]
    assert (serving / version / "assets.extra" / "tf_serving_warmup_requests").read_bytes() == b"warmup"
    # The same model again: nothing copied, no second version, the card left as it was.
    again = _push(tmp_path, model, blessing, output, serving)
    assert [p.name for p in serving.iterdir()] == [version] and not again.has_custom_property("model_card")


def test_the_pusher_does_not_copy_a_card_of_another_model(tmp_path):
    from tfx.types import standard_artifacts

    output, _, blessing, _ = _run_card_executor(tmp_path / "run")
    other = _artifact(standard_artifacts.Model, tmp_path / "other")
    _fake_model(tmp_path / "other", content=b"another graph")
    pushed = _push(tmp_path, other, blessing, output, tmp_path / "serving")
    version = pushed.get_string_custom_property("pushed_version")
    assert (tmp_path / "serving" / version / "saved_model.pb").is_file()
    assert not (tmp_path / "serving" / version / "assets.extra" / "model_card").exists()


def test_the_pipeline_makes_a_card_and_the_pusher_takes_it():
    from pipeline.configs import TINY, PipelineConfig
    from pipeline.pipeline import create_pipeline

    nodes = {node.id: node for node in create_pipeline(PipelineConfig(**TINY)).components}
    card = nodes["ModelCard"]
    assert set(card.inputs) == {
        "ingest_report", "tokenizer", "pretrained_model", "model", "model_run", "evaluation", "blessing",
        "baseline_model",
    }  # fmt: skip
    assert json.loads(card.exec_properties["pretraining"])["custom_config"]["preset"] == "tiny"
    assert json.loads(card.exec_properties["pretraining"])["train_steps"] == TINY["pretrain_steps"]
    assert json.loads(card.exec_properties["corpus"])["input_format"] == "csv"
    assert "model_card" in nodes["Pusher"].inputs


def test_decisions_on_a_threshold_are_named_as_the_cause_of_a_disagreement():
    arrays = _multi_label()
    arrays["probabilities"][0, 0] = arrays["thresholds"][0] + np.float32(3e-8)
    inputs = _inputs(figures_lib.MULTI_LABEL_TASK, arrays)
    inputs.evaluator["overall"]["micro_f1"] += 0.01
    card = card_lib.build_card(inputs, samples=20)
    (problem,) = card["problems"]
    assert "micro_f1" in problem and "1 (note, label) probabilities lie within 1e-06" in problem
