"""The pipeline with task=token_classification on the bundled NCBI-disease sample (its disease
mentions as spans), tiny configuration: every component runs, the Evaluator scores entities, and the
pushed model labels the pieces of raw text with offsets into the text it tokenized."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.pipeline.test_local_run import COMPONENTS, REPO, _executions

CONFIG = REPO / "pipeline" / "ncbi_disease_tokens.json"
TYPES = json.loads(CONFIG.read_text())["entity_types"]


@pytest.fixture(scope="module")
def token_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ncbi")
    command = [
        sys.executable, "pipeline_runner.py", "run", "--tiny", "--config", str(CONFIG),
        "--output-dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, result


def test_every_component_runs_and_every_abstract_is_accounted_for(token_run):
    out, result = token_run
    states, _ = _executions(out / "metadata.sqlite")
    ran = {name for name, runs in states.items() if runs and runs[-1] in ("COMPLETE", "CACHED")}
    assert set(COMPONENTS) <= ran, sorted(set(COMPONENTS) - ran)
    (summary,) = (out / "pipeline" / "ClinicalExampleGen" / "report").glob("*/summary.json")
    counts = json.loads(summary.read_text())
    assert counts["input_records"] == 120 == counts["kept_examples"] + counts["duplicates_collapsed"]
    assert "pushed model:" in result.stdout and "nothing pushed" not in result.stdout


def test_the_evaluator_scores_entities(token_run):
    import tensorflow_model_analysis as tfma

    out, _ = token_run
    (evaluation,) = (out / "pipeline" / "Evaluator" / "evaluation").glob("*")
    overall = {}
    for slice_metrics in tfma.load_metrics(str(evaluation)):
        if not slice_metrics.slice_key.single_slice_keys:
            for metric in slice_metrics.metric_keys_and_values:
                overall[metric.key.name] = metric.value.double_value.value
    assert {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"} <= set(overall)
    assert 0.0 <= overall["entity_f1"] <= 1.0 and 0.0 < overall["token_accuracy"] <= 1.0


def test_the_pushed_model_labels_the_pieces_of_raw_text(token_run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the model's SentencePiece ops)

    from albert_keras import bio_labels

    out, _ = token_run
    (version,) = os.listdir(out / "serving")
    model = tf.saved_model.load(str(out / "serving" / version))
    texts = ["Germline mutations in BRCA1 cause inherited breast and ovarian cancer.", "No  disease\there. "]
    answer = {k: v.numpy() for k, v in model.signatures["serving_default"](text=tf.constant(texts)).items()}
    # One row of label names per text: TF Serving's batching splits every output along its first axis.
    assert [[name.decode() for name in row] for row in answer["label_names"]] == [bio_labels(TYPES)] * 2
    probabilities = answer["probabilities"]
    assert probabilities.shape == (2, 64, len(bio_labels(TYPES)))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(answer["label_ids"], probabilities.argmax(axis=-1))
    assert [t.decode() for t in answer["normalized_text"]] == [texts[0], "No disease here."]
    for row, text in enumerate(answer["normalized_text"]):
        starts, ends = answer["piece_starts"][row], answer["piece_ends"][row]
        real = starts >= 0
        assert not real[0] and real[1]  # [CLS] has no piece
        # The pieces tile the normalized text, in order: each starts where the one before ended.
        assert starts[real][0] == 0 and ends[real][-1] == len(text)
        np.testing.assert_array_equal(starts[real][1:], ends[real][:-1])
