"""The pipeline with task=note_classification (one specialty a note) on the bundled MTSamples sample,
tiny configuration, notes read whole in windows: a note listed under several specialties and no
priority to choose is left out of training and counted; every component runs; the Evaluator scores
the classes; the pushed model answers one distribution over the classes per note."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.pipeline.runs import overall_metrics, ran_every_component, run_pipeline


@pytest.fixture(scope="module")
def note_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("specialty")
    return out, run_pipeline(out, "--set", "task=note_classification")


def test_notes_with_several_specialties_are_left_out_and_counted(note_run):
    import tensorflow_data_validation as tfdv

    out, result = note_run
    assert ran_every_component(out) and "nothing pushed" not in result.stdout
    (stats,) = (out / "pipeline" / "TokenizedTransform" / "post_transform_stats").glob("*/FeatureStats.pb")
    features = {f.path.step[0]: f for f in tfdv.load_stats_binary(str(stats)).datasets[0].features}
    ambiguous = features["label_ambiguous"].num_stats
    assert 0 < ambiguous.mean < 1  # some notes, not all
    # Windows: the sample's notes run to many windows (the tiny run's small vocabulary cuts words into
    # many pieces), and few pass the cap.
    assert features["num_windows"].num_stats.max > 1 and features["windows_cut"].num_stats.mean < 0.5


def test_the_evaluator_scores_classes_and_the_model_answers_one_distribution(note_run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the model's SentencePiece ops)

    out, _ = note_run
    overall, per_class = overall_metrics(out)
    assert {"sparse_categorical_accuracy", "macro_f1"} <= set(overall)
    assert {label for name, label in per_class if name == "f1"} <= set(range(40))
    version = max(os.listdir(out / "serving"), key=int)
    model = tf.saved_model.load(str(out / "serving" / version))
    note = " ".join(["Chest pain radiating to the left arm, worse on exertion."] * 30)  # several windows
    probabilities = model.signatures["serving_default"](text=tf.constant([note, "Knee pain."]))[
        "probabilities"
    ]
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1.0, atol=1e-5)


def test_the_exported_model_is_the_best_evaluation_of_the_run(note_run):
    import json

    out, _ = note_run
    run = out / "pipeline" / "finetune" / "model_run"
    (training_file,) = run.glob("*/training.json")
    training = json.loads(training_file.read_text())
    evals = training["evals"]
    assert training["metric"] == "accuracy" and len(evals) >= 2
    assert [e["step"] for e in evals] == sorted({e["step"] for e in evals})
    assert training["best"] == max(e["metric"] for e in evals)
    assert training["best_step"] == next(e["step"] for e in evals if e["metric"] == training["best"])
    assert training["steps_trained"] == training["steps_planned"] or training["stopped_early"]
    # The model exported, read again on the eval split after training, scores what the best
    # evaluation scored: its weights are the best evaluation's, not the last step's.
    (reading_file,) = run.glob("*/reading.json")
    reading = json.loads(reading_file.read_text())
    assert reading["eval_by_window_pooling"][reading["window_pooling"]] == pytest.approx(
        training["best"], abs=1e-9
    )
    (predictions_file,) = run.glob("*/eval_predictions.npz")
    with np.load(predictions_file, allow_pickle=False) as predictions:
        probabilities, targets = predictions["probabilities"], predictions["targets"]
        assert probabilities.shape == (reading["eval_notes"], 40) and targets.shape == (
            reading["eval_notes"],
        )
        assert set(predictions["note_type"]) and predictions["length_bucket"].shape == targets.shape
    right = probabilities.argmax(axis=1)[targets >= 0] == targets[targets >= 0]
    assert right.mean() == pytest.approx(training["best"], abs=1e-6)
