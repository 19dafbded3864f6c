"""bench/quality.py: the data and split rules it rests on, the baselines, the metric plumbing, the packing
of ALBERT inputs, and the smoke budget end to end (under the default backend, and under JAX with
TensorFlow made unimportable). The data are the bundled samples, laid out as ../shared/data is."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import quality, quality_albert, quality_baselines, quality_metrics
from bench.quality_data import (
    NCBI_FILES,
    NOTE_SPLITS,
    SAMPLES,
    Example,
    Sentence,
    TaskData,
    find_sources,
    load_tasks,
    read_mtsamples,
    read_pubmedqa,
    split_by_group,
    split_pubmedqa,
)
from components import scores
from components.clinical_example_gen.split import split_index

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "quality.py"


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = [
        "sample_id",
        "type_id",
        "medical_specialty",
        "sample_name",
        "description",
        "transcription",
        "keywords",
        "url",
    ]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in columns})


def shared_layout(root: Path) -> Path:
    """The bundled samples laid out as ../shared/data: mtsamples/mtsamples.csv, ncbi_disease/conll/*.tsv,
    pubmedqa/ori_pqal.json and test_ground_truth.json."""
    (root / "mtsamples").mkdir(parents=True)
    shutil.copy(SAMPLES / "mtsamples_sample.csv", root / "mtsamples" / "mtsamples.csv")
    shutil.copytree(SAMPLES / "ncbi_disease_conll", root / "ncbi_disease" / "conll")
    (root / "pubmedqa").mkdir()
    records, truth = {}, {}
    for line in (SAMPLES / "pubmedqa_sample.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        records[r["id"]] = {"QUESTION": r["question"], "CONTEXTS": r["context"], "final_decision": r["label"]}
        if r["split"] == "test":
            truth[r["id"]] = r["label"]
    (root / "pubmedqa" / "ori_pqal.json").write_text(json.dumps(records), encoding="utf-8")
    (root / "pubmedqa" / "test_ground_truth.json").write_text(json.dumps(truth), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return shared_layout(tmp_path_factory.mktemp("shared_data"))


@pytest.fixture(scope="module")
def tasks(data_root) -> dict[str, TaskData]:
    return load_tasks(find_sources(data_root))


@pytest.fixture(scope="module")
def tokenizer():
    sentences = [
        " ".join(s.words)
        for s in load_tasks(find_sources(SAMPLES), ["ncbi_disease"])["ncbi_disease"].splits["train"]
    ]
    return quality_albert.Tokenizer.train(sentences, vocab_size=300)


# -- data and splits ---------------------------------------------------------------------------------


def test_mtsamples_rows_of_one_note_merge_and_notes_split_by_sample_id(tmp_path):
    _write_csv(
        tmp_path / "m.csv",
        [
            {"sample_id": "7", "medical_specialty": "Surgery", "transcription": "note seven"},
            {"sample_id": "7", "medical_specialty": "Orthopedic", "transcription": "note seven"},
            {"sample_id": "7", "medical_specialty": "Surgery", "transcription": "note seven"},
            {"sample_id": "12", "medical_specialty": "Radiology", "transcription": "same text"},
            {"sample_id": "3", "medical_specialty": "Neurology", "transcription": "same text"},
            {"sample_id": "5", "medical_specialty": "Urology", "transcription": "   "},
        ],
    )
    notes = read_mtsamples(tmp_path / "m.csv")
    by_id = {n.unit_id: n.labels for n in notes}
    # "12" and "3" share a text: one note under the smaller id in string order, as ingestion keeps it.
    assert by_id == {"7": ("Orthopedic", "Surgery"), "12": ("Neurology", "Radiology")}
    splits = split_by_group(notes)
    names = [name for name, _ in NOTE_SPLITS]
    for split, units in splits.items():
        for note in units:
            assert names[split_index(note.unit_id, NOTE_SPLITS)] == split


def test_no_sample_id_is_in_two_splits_and_single_label_notes_are_the_unambiguous_ones(tasks):
    multi, single = tasks["mtsamples_multi"], tasks["mtsamples_single"]
    ids = {split: {n.unit_id for n in units} for split, units in multi.splits.items()}
    assert not ids["train"] & ids["eval"] and not ids["train"] & ids["test"] and not ids["eval"] & ids["test"]
    assert all(len(units) for units in multi.splits.values())
    for split, units in single.splits.items():
        assert {n.unit_id for n in units} == {n.unit_id for n in multi.splits[split] if len(n.labels) == 1}
    with open(SAMPLES / "mtsamples_sample.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(len(units) for units in multi.splits.values()) == len({r["sample_id"] for r in rows})


def test_pubmedqa_test_split_is_exactly_the_official_test_pmids(tmp_path):
    records = {
        str(1000 + i): {
            "QUESTION": f"q{i}",
            "CONTEXTS": [f"a{i}", f"b{i}"],
            "final_decision": ("yes", "no", "maybe")[i % 3],
        }
        for i in range(60)
    }
    truth = {pmid: r["final_decision"] for pmid, r in list(records.items())[::4]}
    (tmp_path / "ori_pqal.json").write_text(json.dumps(records))
    (tmp_path / "test_ground_truth.json").write_text(json.dumps(truth))
    examples, test_ids = read_pubmedqa(tmp_path)
    splits = split_pubmedqa(examples, test_ids)
    assert {e.unit_id for e in splits["test"]} == set(truth)
    assert {e.unit_id for e in splits["train"] + splits["eval"]} == set(records) - set(truth)
    assert splits["eval"] and splits["train"]
    reordered = split_pubmedqa(list(reversed(examples)), test_ids)  # the split depends on the PMID alone
    assert {k: sorted(e.unit_id for e in v) for k, v in reordered.items()} == {
        k: sorted(e.unit_id for e in v) for k, v in splits.items()
    }
    first = splits["test"][0]
    assert first.text_b == " ".join(records[first.unit_id]["CONTEXTS"])

    wrong = dict(truth)
    wrong[next(iter(wrong))] = "maybe" if truth[next(iter(truth))] != "maybe" else "yes"
    (tmp_path / "test_ground_truth.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match="ground truth differs"):
        read_pubmedqa(tmp_path)


def test_ncbi_official_files_map_to_train_eval_test(tmp_path):
    conll = tmp_path / "ncbi_disease" / "conll"
    conll.mkdir(parents=True)
    for split, name in NCBI_FILES.items():
        (conll / name).write_text(f"{split}\tO\nfever\tB-Disease\n\nsecond\tO\n\n", encoding="utf-8")
    sources = find_sources(tmp_path)
    assert not sources.bundled["ncbi_disease"] and sources.bundled["mtsamples"]
    task = load_tasks(sources, ["ncbi_disease"])["ncbi_disease"]
    assert task.source.startswith("ncbi_disease/conll")
    for split in NCBI_FILES:
        assert task.splits[split][0] == Sentence((split, "fever"), (0, 1))
        assert len(task.splits[split]) == 2


def test_missing_data_root_falls_back_to_the_bundled_samples(tmp_path):
    sources = find_sources(tmp_path / "nothing-here")
    assert sources.any_bundled and all(sources.bundled.values())
    loaded = load_tasks(sources)
    assert list(loaded) == list(quality.TASKS)
    assert all(task.bundled and "data/sample" in task.source for task in loaded.values())
    assert len(loaded["pubmedqa"].splits["test"]) == 40  # the sample's official test PMIDs


# -- metrics -----------------------------------------------------------------------------------------


def test_entity_bootstrap_from_sentence_counts_equals_entity_scores_on_the_resample():
    rng = np.random.default_rng(1)
    gold = [rng.choice([0, 0, 0, 1, 2], size=rng.integers(3, 12)).tolist() for _ in range(40)]
    predicted = [[t if rng.random() < 0.8 else int(rng.integers(0, 3)) for t in row] for row in gold]
    statistic = quality_metrics._statistic("entities", gold, predicted, 3, "f1")
    indices = rng.integers(0, 40, 40)
    direct = scores.entity_scores([gold[i] for i in indices], [predicted[i] for i in indices])["f1"]
    assert statistic(indices) == pytest.approx(direct)


@pytest.mark.parametrize(
    "kind, gold, predicted",
    [
        ("single_label", np.array([0, 1, 2, 1, 0, 2, 2, 1] * 5), np.array([0, 1, 1, 1, 0, 2, 0, 1] * 5)),
        ("pair", np.array([0, 0, 1, 2] * 10), np.array([0, 1, 1, 2] * 10)),
        ("multi_label", np.eye(4, dtype=int)[[0, 1, 2, 3, 1] * 6], np.eye(4, dtype=int)[[0, 1, 2, 1, 1] * 6]),
        ("entities", [[0, 1, 2, 0], [1, 0, 0]] * 15, [[0, 1, 2, 0], [0, 0, 1]] * 15),
    ],
)
def test_every_figure_has_an_interval_around_it(kind, gold, predicted):
    result = quality_metrics.scored(kind, gold, predicted, num_labels=4, samples=200)
    assert list(result) == list(quality_metrics.METRICS[kind])
    for figure in result.values():
        assert figure["low"] <= figure["value"] <= figure["high"]


def test_multi_label_thresholds_come_from_eval_and_apply_to_test():
    eval_probabilities = np.array([[0.9, 0.2], [0.8, 0.3], [0.1, 0.25], [0.2, 0.1]])
    eval_gold = np.array([[1, 1], [1, 1], [0, 0], [0, 0]])
    thresholds, decisions = quality_metrics.decide_multi_label(
        eval_probabilities, eval_gold, np.array([[0.5, 0.22], [0.4, 0.15]])
    )
    assert thresholds[0] == pytest.approx(0.5) and 0.1 < thresholds[1] < 0.25
    np.testing.assert_array_equal(decisions, [[1, 1], [0, 0]])


# -- baselines ---------------------------------------------------------------------------------------


def _notes(specs: list[tuple[str, tuple[str, ...]]], prefix: str) -> list[Example]:
    return [Example(f"{prefix}{i}", text, labels) for i, (text, labels) in enumerate(specs)]


def _keyword_task(kind: str) -> TaskData:
    rng = np.random.default_rng(0)
    words = {"cardio": "heart murmur echo", "ortho": "knee fracture cast", "neuro": "seizure migraine eeg"}
    filler = ["patient", "seen", "today", "history", "noted", "plan", "follow", "up"]

    def note(labels: tuple[str, ...]) -> str:
        parts = list(rng.choice(filler, 12)) + [w for label in labels for w in words[label].split()]
        rng.shuffle(parts)
        return " ".join(parts)

    def split(n: int, prefix: str) -> list[Example]:
        names = sorted(words)
        specs = []
        for i in range(n):
            labels = (
                (names[i % 3],)
                if kind == "single_label"
                else tuple(sorted({names[i % 3], names[(i * 7) % 3]}))
            )
            specs.append((note(labels), labels))
        return _notes(specs, prefix)

    splits = {"train": split(60, "t"), "eval": split(15, "e"), "test": split(30, "x")}
    return TaskData("toy", kind, sorted(words), splits, "toy", bundled=False)


@pytest.mark.parametrize("kind", ["single_label", "multi_label"])
def test_classic_text_baseline_learns_keyword_notes_and_beats_majority(kind):
    task = _keyword_task(kind)
    settings = quality_baselines.ClassicSettings(c_grid=(1.0, 10.0))
    gold = quality_metrics.gold_of(task, "test")
    metric = quality_metrics.primary(kind)
    learned = quality_baselines.classic(task, settings)
    baseline = quality_baselines.majority(task)
    ours = quality_metrics.point_scores(kind, gold, learned.test, 3)[metric]
    theirs = quality_metrics.point_scores(kind, gold, baseline.test, 3)[metric]
    assert ours > 0.9 > theirs
    assert learned.details["C"] in (1.0, 10.0)


def test_majority_predicts_the_most_frequent_train_class_and_label_set():
    task = _keyword_task("multi_label")
    result = quality_baselines.majority(task)
    frequency = quality_metrics.gold_of(task, "train").mean(axis=0)
    assert result.test.shape == (30, 3) and (result.test == result.test[0]).all()
    if (frequency >= 0.5).any() and result.details["rule"].startswith("labels"):
        np.testing.assert_array_equal(result.test[0], frequency >= 0.5)
    else:
        assert result.test[0].sum() == 1 and result.test[0].argmax() == frequency.argmax()


def test_crf_beats_all_o_on_a_toy_ner_set():
    rng = np.random.default_rng(0)
    diseases = [["breast", "cancer"], ["diabetes"], ["cystic", "fibrosis"], ["asthma"], ["colon", "cancer"]]
    other = [
        "the",
        "patient",
        "with",
        "a",
        "history",
        "of",
        "was",
        "treated",
        "for",
        "and",
        "then",
        "recovered",
        "from",
        "mild",
    ]

    def sentence() -> Sentence:
        words, tags = [], []
        for _ in range(int(rng.integers(1, 3))):
            words += list(rng.choice(other, int(rng.integers(2, 5))))
            tags += [0] * (len(words) - len(tags))
            disease = diseases[int(rng.integers(len(diseases)))]
            words += disease
            tags += [1] + [2] * (len(disease) - 1)
        return Sentence(tuple(words), tuple(tags))

    splits = {
        split: [sentence() for _ in range(n)] for split, n in (("train", 80), ("eval", 20), ("test", 40))
    }
    task = TaskData("toy_ner", "entities", ["O", "B-Disease", "I-Disease"], splits, "toy", bundled=False)
    gold = quality_metrics.gold_of(task, "test")
    crf = quality_baselines.classic(task, quality_baselines.ClassicSettings(crf_iterations=50))
    all_o = quality_baselines.majority(task)
    assert quality_metrics.point_scores("entities", gold, all_o.test, 3)["f1"] == 0.0
    assert quality_metrics.point_scores("entities", gold, crf.test, 3)["f1"] > 0.9


# -- ALBERT inputs -----------------------------------------------------------------------------------


def test_windows_follow_the_pipelines_count_and_stride():
    assert quality_albert.window_starts(100, budget=126, stride=63, max_windows=64) == [0]
    assert quality_albert.window_starts(300, budget=126, stride=63, max_windows=64) == [0, 63, 126, 189]
    assert quality_albert.window_starts(10_000, budget=126, stride=63, max_windows=5) == list(
        range(0, 253, 63)
    )


def test_pairs_pack_round_robin_as_the_transform_graph(tokenizer):
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    tokens, segments = quality_albert.pack([10] * 3, [20] * 20, 16, tokenizer)  # A short: B takes the rest
    assert tokens == [cls, 10, 10, 10, sep] + [20] * 10 + [sep] and segments == [0] * 5 + [1] * 11
    tokens, _ = quality_albert.pack([10] * 20, [20] * 20, 16, tokenizer)  # both long: A ceil, B floor
    assert tokens.count(10) == 7 and tokens.count(20) == 6 and len(tokens) == 16


def test_sentences_label_each_words_first_piece_and_cut_long_ones(tokenizer):
    words = ("Hereditary", "nonpolyposis", "colorectal", "cancer", "is", "common")
    tags = (0, 1, 2, 2, 0, 0)
    encoded = quality_albert._encode_sentences([Sentence(words, tags)], tokenizer, seq_length=64)
    labels = encoded.targets[0]
    positions = encoded.word_positions[0]
    np.testing.assert_array_equal(labels[positions], tags)
    assert (labels[labels != quality_albert.IGNORE_LABEL].size == len(words)) and labels[0] == -100
    assert encoded.inputs["padding_mask"][0].sum() == sum(len(tokenizer.encode(w)) for w in words) + 2

    cut = quality_albert._encode_sentences([Sentence(words, tags)], tokenizer, seq_length=6)
    assert cut.cut == 1 and (cut.word_positions[0] == -1).any()
    logits = np.zeros((1, 6, 3))
    logits[0, :, 1] = 1.0  # B everywhere it is read
    answers = quality_albert.word_tags(logits, cut)[0]
    read = cut.word_positions[0] >= 0
    assert all(tag == (1 if was_read else 0) for tag, was_read in zip(answers, read, strict=True))


def test_notes_become_windows_with_the_notes_labels(tokenizer):
    task = _keyword_task("multi_label")
    encoded = quality_albert.encode_split(task, "test", tokenizer, seq_length=8, stride=3, max_windows=64)
    assert encoded.windows > encoded.units == 30
    gold = quality_metrics.gold_of(task, "test")
    np.testing.assert_array_equal(encoded.targets, gold[encoded.unit])
    assert (encoded.inputs["token_ids"][:, 0] == tokenizer.cls_id).all()


def test_window_pooling_mean_and_max():
    logits = np.array([[1.0, 0.0], [3.0, -2.0], [0.5, 0.5]])
    unit = np.array([0, 0, 1])
    np.testing.assert_allclose(quality_albert.pool(logits, unit, 2, "mean"), [[2.0, -1.0], [0.5, 0.5]])
    np.testing.assert_allclose(quality_albert.pool(logits, unit, 2, "max"), [[3.0, 0.0], [0.5, 0.5]])


# -- the smoke budget end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory, data_root) -> Path:
    """A tiny AlbertPretrainer saved as the pretraining Trainer saves it, with its spm.model beside."""
    import keras

    from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer

    folder = tmp_path_factory.mktemp("pretrained")
    texts = quality.tokenizer_texts(load_tasks(find_sources(data_root), ["pubmedqa"])["pubmedqa"])
    spm_model = quality_albert.Tokenizer.train(texts, vocab_size=300)
    (folder / "spm.model").write_bytes(spm_model.processor.serialized_model_proto())
    keras.utils.set_random_seed(0)
    config = AlbertConfig.preset("tiny", vocab_size=spm_model.vocab_size)
    AlbertPretrainer(AlbertBackbone(config)).save(folder / "pretrainer.keras")
    return folder / "pretrainer.keras"


def _check_report(report: dict, tasks: list[str], rows: tuple[str, ...] = quality.ROWS) -> None:
    assert list(report["tasks"]) == tasks
    assert report["data"]["bundled_samples_for"] == []
    for name, task in report["tasks"].items():
        assert list(task["rows"]) == list(quality.ROWS), name
        for row, result in task["rows"].items():
            if row not in rows:
                assert result["status"] == "not run (--rows)", (name, row, result["status"])
                continue
            assert result["status"] == "ok", (name, row, result["status"])
            assert list(result["metrics"]) == list(quality_metrics.METRICS[task["kind"]])
            for figure in result["metrics"].values():
                assert figure["low"] <= figure["value"] <= figure["high"], (name, row, figure)
            assert result["wall_s"] >= 0
        assert task["anchors"]


#: The JAX run leaves out the plain-recipe row: the same code path as albert_scratch, twice the time.
JAX_ROWS = ("majority", "classic", "albert_scratch", "albert_init")


@pytest.mark.slow
def test_smoke_budget_end_to_end_under_jax_imports_no_tensorflow(tmp_path, data_root, init_checkpoint):
    """The whole benchmark from its command line, as the GPU machine (no TensorFlow) runs it: every task
    and row, the table and the published anchors printed, and TensorFlow never imported."""
    out = tmp_path / "quality.json"
    program = (
        "import runpy, sys\n"
        "sys.modules['tensorflow'] = None\n"  # any import of TensorFlow now raises ImportError
        f"sys.argv = [{str(SCRIPT)!r}, '--budget', 'smoke', '--data', {str(data_root)!r},"
        f" '--out', {str(out)!r}, '--init', {str(init_checkpoint)!r}, '--rows', *{JAX_ROWS!r}]\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as end:\n"
        "    code = end.code\n"
        "else:\n"
        "    code = 0\n"
        "import keras\n"
        "assert keras.backend.backend() == 'jax', keras.backend.backend()\n"
        "loaded = [m for m, v in sys.modules.items() if m.split('.')[0] == 'tensorflow' and v is not None]\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["keras_backend"] == "jax"
    _check_report(report, list(quality.TASKS), JAX_ROWS)
    assert report["tasks"]["mtsamples_multi"]["rows"]["albert_init"]["details"]["init"] == "pretrainer.keras"
    for name in quality.TASKS:
        assert f"== {name}" in result.stdout
    assert "published: BioBERT 0.891" in result.stdout and "published: majority 0.552" in result.stdout
    assert str(REPO) not in result.stdout and str(data_root) in result.stdout  # only the --data given
