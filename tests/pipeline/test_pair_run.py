"""The pipeline with task=text_pair_classification on the bundled PubMedQA sample (question + abstract
-> yes / no / maybe; the official test PMIDs as the test split), tiny configuration: every component
runs, and the pushed model answers a question and its passage, over Predict and Classify alike."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.pipeline.runs import REPO, ran_every_component, run_pipeline

CONFIG = REPO / "pipeline" / "pubmedqa.json"
SAMPLE = REPO / "data" / "sample" / "pubmedqa_sample.jsonl"


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pubmedqa")
    return out, run_pipeline(out, "--config", str(CONFIG))


def test_every_component_runs_and_the_official_test_set_is_the_test_split(pair_run):
    out, result = pair_run
    assert ran_every_component(out)
    (summary,) = (out / "pipeline" / "ClinicalExampleGen" / "report").glob("*/summary.json")
    counts = json.loads(summary.read_text())
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    tests = sum(record["split"] == "test" for record in records)
    assert counts["input_records"] == len(records) and counts["rejected"] == 0
    assert counts["examples_per_split"]["test"] == tests
    assert "pushed model:" in result.stdout and "nothing pushed" not in result.stdout


def test_the_pushed_model_answers_a_question_and_its_passage(pair_run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the model's SentencePiece ops)

    from serving.client import DEFAULT_MODEL, ServingClient, text_example
    from serving.model_server import ModelServer
    from serving.models_config import ModelEntry

    out, _ = pair_run
    version = max(os.listdir(out / "serving"), key=int)
    model = tf.saved_model.load(str(out / "serving" / version))
    questions = ["Does aspirin prevent stroke?", "Is screening useful?"]
    passages = ["Aspirin lowered the rate of stroke in the trial.", "Screening found no benefit."]
    answer = model.signatures["serving_default"](text=tf.constant(questions), text_b=tf.constant(passages))
    probabilities = answer["probabilities"].numpy()
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [name.decode() for name in answer["label_names"].numpy()[0]] == ["yes", "no", "maybe"]
    # The passage is read: the Evaluator's copy shows the pair packed as two segments.
    full = tf.saved_model.load(str(next(out.glob("**/finetune/model/*/Format-Serving"))))
    example = tf.train.Example()
    example.features.feature["text"].bytes_list.value.append(questions[0].encode())
    example.features.feature["text_b"].bytes_list.value.append(passages[0].encode())
    features = full.signatures["transform_features"](examples=tf.constant([example.SerializeToString()]))
    segments = features["segment_ids"].numpy()[0]
    assert segments[0] == 0 and 1 in segments  # [CLS] question [SEP] passage [SEP]

    examples = []
    for question, passage in zip(questions, passages, strict=True):
        example = text_example(question)
        example.features.feature["text_b"].bytes_list.value.append(passage.encode())
        examples.append(example)
    server = ModelServer([ModelEntry(DEFAULT_MODEL, str(out / "serving"))], port=0, poll_seconds=0)
    port = server.start()
    try:
        with ServingClient(f"127.0.0.1:{port}") as client:
            for got in (client.predict(questions, passages), client.classify(examples)):
                np.testing.assert_allclose(
                    [[row[n] for n in ("yes", "no", "maybe")] for row in got], probabilities, atol=1e-5
                )
    finally:
        server.stop(grace_seconds=1.0)
