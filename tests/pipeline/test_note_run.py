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
