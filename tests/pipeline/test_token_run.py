"""The pipeline with task=token_classification on the bundled NCBI-disease sample in BLURB's form (the
official CoNLL files and splits, one type, Disease), tiny configuration: every component runs, each
file's sentences land in its own split, the Evaluator scores entities on words, and the pushed model
answers entities with character offsets into the text sent."""

from __future__ import annotations

import json
import os

import pytest

from tests.pipeline.runs import REPO, overall_metrics, ran_every_component, run_pipeline

CONFIG = REPO / "pipeline" / "ncbi_disease_tokens.json"


@pytest.fixture(scope="module")
def token_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ncbi")
    return out, run_pipeline(out, "--config", str(CONFIG))


def _sentences(path) -> int:
    return sum(1 for block in path.read_text(encoding="utf-8").split("\n\n") if block.strip())


def test_every_component_runs_and_every_sentence_keeps_its_official_split(token_run):
    out, result = token_run
    assert ran_every_component(out)
    (summary,) = (out / "pipeline" / "ClinicalExampleGen" / "report").glob("*/summary.json")
    counts = json.loads(summary.read_text())
    corpus = REPO / "data" / "sample" / "ncbi_disease_conll"
    per_file = {name: _sentences(corpus / f"{name}.tsv") for name in ("train", "devel", "test")}
    assert (
        counts["input_records"]
        == sum(per_file.values())
        == counts["kept_examples"] + counts["duplicates_collapsed"]
    )
    assert counts["rejected"] == 0
    # Duplicates collapse within a split only, so the official test set is kept whole.
    (examples,) = (out / "pipeline" / "ClinicalExampleGen" / "examples").glob("*")
    test_records = _count_records(examples / "Split-test")
    assert (
        test_records <= per_file["test"] and test_records + counts["duplicates_collapsed"] >= per_file["test"]
    )
    assert counts["examples_per_split"]["test"] == test_records
    assert "pushed model:" in result.stdout and "nothing pushed" not in result.stdout


def _count_records(folder) -> int:
    import tensorflow as tf

    files = [str(path) for path in folder.glob("*.gz")]
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_the_evaluator_scores_entities_on_words_per_type(token_run):
    out, _ = token_run
    overall, per_type = overall_metrics(out)
    assert {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"} <= set(overall)
    assert 0.0 <= overall["entity_f1"] <= 1.0 and 0.0 < overall["token_accuracy"] <= 1.0
    # One type: its figures are the overall ones.
    assert per_type[("entity_f1", 0)] == pytest.approx(overall["entity_f1"])


def test_the_pushed_model_answers_entities_at_offsets_of_the_text_sent(token_run):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the model's SentencePiece ops)

    out, _ = token_run
    (version,) = os.listdir(out / "serving")
    model = tf.saved_model.load(str(out / "serving" / version))
    texts = [
        "Germline mutations in BRCA1 cause inherited breast and ovarian cancer.",
        "No  disease\there. ",
        "",
        "Ｈｕｎｔｉｎｇｔｏｎ ﬁbrosis and Cafe\u0301-au-lait\r\nspots 😀",
    ]
    answer = {k: v.numpy() for k, v in model.signatures["serving_default"](text=tf.constant(texts)).items()}
    assert {"num_entities", "entity_starts", "entity_ends", "entity_types", "entity_scores"} <= set(answer)
    width = answer["entity_starts"].shape[1]
    assert all(answer[name].shape == (len(texts), width) for name in ("entity_ends", "entity_types"))
    assert answer["num_entities"][2] == 0
    for row, text in enumerate(texts):
        n = int(answer["num_entities"][row])
        starts, ends = answer["entity_starts"][row], answer["entity_ends"][row]
        assert (starts[n:] == -1).all() and (ends[n:] == -1).all()
        for start, end, kind in zip(starts[:n], ends[:n], answer["entity_types"][row][:n], strict=True):
            assert 0 <= start < end <= len(text) and kind == b"Disease"
            assert not text[start].isspace() and not text[end - 1].isspace()
