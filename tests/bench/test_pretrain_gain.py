"""bench/pretrain_gain.py: the smoke path end to end on the bundled samples (corpus, vocabulary,
pretraining curve, saved model and 16 MiB weight files, both rows and their difference per task), the
same in stages as the GPU check runs it (inputs prepared, pretraining from them under JAX without
TensorFlow and without rows, the rows later from the saved weights), and the parts it rests on: the
held-out split, instance making, the packed documents, weight sharding, the paired difference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import pretrain_gain as gain
from bench import quality_metrics
from bench.pretraining_corpus import Document

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "pretrain_gain.py"
#: A pair task (array predictions) and the NER task (per-sentence lists): both kinds of paired bootstrap.
SMOKE_TASKS = ("ncbi_disease", "pubmedqa")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """One smoke run from the command line on the bundled samples (the data folder given is absent)."""
    folder = tmp_path_factory.mktemp("gain")
    out, report = folder / "out", folder / "gain.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "--budget",
        "smoke",
        "--minutes",
        "0.15",
        "--data",
        str(folder / "absent"),
        "--out",
        str(out),
        "--json",
        str(report),
        "--tasks",
        *SMOKE_TASKS,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": out, "report": json.loads(report.read_text()), "stdout": result.stdout}


@pytest.mark.slow
def test_smoke_table_has_both_rows_and_their_paired_difference_per_task(smoke):
    report, stdout = smoke["report"], smoke["stdout"]
    assert list(report["tasks"]) == list(SMOKE_TASKS)
    assert "bundled samples stand in" in stdout
    for name, task in report["tasks"].items():
        assert f"== {name}" in stdout
        rows = task["rows"]
        assert list(rows) == list(gain.ROWS)
        for row, result in rows.items():
            assert result["status"] == "ok", (name, row, result["status"])
            for figure in result["metrics"].values():
                assert figure["low"] <= figure["value"] <= figure["high"], (name, row)
        assert rows["albert_init"]["details"]["init"] == gain.MODEL_FILE
        assert rows["albert_scratch"]["details"]["init"] is None
        for metric, difference in task["init_minus_scratch"].items():
            expected = (
                rows["albert_init"]["metrics"][metric]["value"]
                - rows["albert_scratch"]["metrics"][metric]["value"]
            )
            assert difference["value"] == pytest.approx(expected), (name, metric)
            assert difference["low"] <= difference["high"], (name, metric)
    table = stdout.split("== pretraining curve")[0]
    assert table.count("   albert_scratch ") == table.count("   albert_init ") == len(SMOKE_TASKS)
    assert table.count("   init - scratch ") == len(SMOKE_TASKS)


@pytest.mark.slow
def test_smoke_curve_has_points_with_intervals_and_the_heldout_loss_falls(smoke):
    pretraining = smoke["report"]["pretraining"]
    curve = pretraining["curve"]
    assert len(curve) >= 3
    steps = [point["step"] for point in curve]
    assert steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] == pretraining["steps"] > 0
    for point in curve:
        for name in ("mlm_accuracy", "sop_accuracy", "loss"):
            assert point[name]["low"] <= point[name]["value"] <= point[name]["high"], (point["step"], name)
        assert 0 <= point["mlm_accuracy"]["value"] <= 1 and 0 <= point["sop_accuracy"]["value"] <= 1
    assert curve[-1]["loss"]["value"] < curve[0]["loss"]["value"]
    assert curve[-1]["mlm_accuracy"]["value"] > curve[0]["mlm_accuracy"]["value"]
    assert "== pretraining curve" in smoke["stdout"]


@pytest.mark.slow
def test_smoke_weight_files_are_at_most_16_mib_and_load_back_with_equal_outputs(smoke):
    import keras

    import albert_keras  # noqa: F401  (registers the classes that the saved model names)

    out = smoke["out"]
    files = sorted((out / gain.WEIGHTS_DIR).iterdir())
    assert (out / gain.WEIGHTS_DIR / gain.WEIGHTS_INDEX) in files and len(files) >= 2
    assert all(f.stat().st_size <= gain.MAX_WEIGHT_FILE_BYTES for f in files)
    listed = {w["file"] for w in smoke["report"]["weights"]}
    assert {str(f.relative_to(out)) for f in files} <= listed and gain.MODEL_FILE in listed

    saved = keras.saving.load_model(out / gain.MODEL_FILE, safe_mode=True)
    rebuilt = gain.load_sharded_pretrainer(out)
    vocab_size = saved.backbone.config.vocab_size
    rng = np.random.default_rng(0)
    batch = {
        "token_ids": rng.integers(5, vocab_size, (3, 24)).astype("int32"),
        "segment_ids": np.repeat([[0] * 12 + [1] * 12], 3, 0).astype("int32"),
        "padding_mask": np.ones((3, 24), "int32"),
        "mask_positions": np.array([[1, 5, 9]] * 3, "int32"),
    }
    expected, actual = saved.predict_on_batch(batch), rebuilt.predict_on_batch(batch)
    for name in ("mlm_logits", "sop_logits"):
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6, atol=1e-6)
    assert not np.allclose(expected["mlm_logits"][0, 0], expected["mlm_logits"][0, 1])  # not a constant model


@pytest.mark.slow
def test_smoke_vocabulary_is_albert_s_and_heldout_documents_were_never_trained_on(smoke):
    import sentencepiece as spm

    out, report = smoke["out"], smoke["report"]
    processor = spm.SentencePieceProcessor(model_file=str(out / gain.SPM_FILE))
    for piece, expected in (("[CLS]", 2), ("[SEP]", 3), ("[MASK]", 4)):
        assert processor.piece_to_id(piece) == expected and processor.is_control(expected)
    assert report["model"]["vocab_size"] == processor.get_piece_size() == report["tokenizer"]["vocab_size"]

    def blocks(name: str) -> set[str]:
        return {
            b for b in (out / gain.CORPUS_DIR / name).read_text(encoding="utf-8").split("\n\n") if b.strip()
        }

    train, heldout = blocks(gain.TRAIN_TEXT), blocks(gain.HELDOUT_TEXT)
    assert len(heldout) == report["corpus"]["heldout_documents"] > 0
    assert not train & heldout
    manifest = json.loads((out / gain.CORPUS_DIR / "manifest.json").read_text())
    assert manifest["data"]["missing"] == ["medquad"]  # no MedQuAD sample is bundled


# -- in stages, as bench/device_check.sh runs it ----------------------------------------------------


def _gain(*args: str | Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    command = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> dict:
    """--prepare-only; then --from-prepared --skip-rows under JAX with TensorFlow unimportable (as on the
    GPU machine); then pretrainer.keras removed (only the files of at most 16 MiB come back from there)
    and --rows-only on one task from the weights."""
    folder = tmp_path_factory.mktemp("staged")
    absent, prepared, pretrained, rows = (folder / name for name in ("absent", "prep", "pretrained", "rows"))
    done = _gain("--budget", "smoke", "--prepare-only", "--data", absent, "--out", prepared)
    assert done.returncode == 0, done.stderr[-3000:]
    prepare_stdout = done.stdout

    program = (
        "import runpy, sys\n"
        "sys.modules['tensorflow'] = None\n"  # any import of TensorFlow now raises ImportError
        f"sys.argv = [{str(SCRIPT)!r}, '--budget', 'smoke', '--from-prepared', {str(prepared)!r},"
        f" '--skip-rows', '--minutes', '0.1', '--out', {str(pretrained)!r}]\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as end:\n"
        "    code = end.code\n"
        "else:\n"
        "    code = 0\n"
        "loaded = [m for m, v in sys.modules.items() if m.split('.')[0] == 'tensorflow' and v is not None]\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pretrain_stdout = done.stdout
    pretrained_files = {str(f.relative_to(pretrained)) for f in pretrained.rglob("*") if f.is_file()}
    (pretrained / gain.MODEL_FILE).unlink()

    done = _gain(
        "--budget", "smoke", "--rows-only", "--init", pretrained, "--data", absent, "--out", rows,
        "--tasks", "pubmedqa",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        "prepared": prepared,
        "prepare_stdout": prepare_stdout,
        "pretrained": pretrained,
        "pretrained_files": pretrained_files,
        "pretrain_stdout": pretrain_stdout,
        "pretrain_report": json.loads((pretrained / gain.REPORT_FILE).read_text()),
        "rows": rows,
        "rows_stdout": done.stdout,
        "rows_report": json.loads((rows / gain.REPORT_FILE).read_text()),
    }


@pytest.mark.slow
def test_prepare_only_writes_the_tokens_the_vocabulary_and_the_settings_and_no_text(staged):
    prepared = staged["prepared"]
    assert {f.name for f in prepared.iterdir()} == {gain.TOKENS_FILE, gain.SPM_FILE, gain.PREPARED_FILE}
    record = json.loads((prepared / gain.PREPARED_FILE).read_text())
    assert record["budget"] == "smoke" and record["settings"]["max_documents"] == 400
    assert record["corpus"]["train_documents"] + record["corpus"]["heldout_documents"] == 400
    assert "prepared for budget smoke: " in staged["prepare_stdout"] and "total " in staged["prepare_stdout"]


@pytest.mark.slow
def test_pretraining_from_prepared_inputs_saves_the_model_and_skips_the_rows(staged):
    report, pretrained = staged["pretrain_report"], staged["pretrained"]
    assert report["keras_backend"] == "jax" and report["rows_skipped"] is True and report["tasks"] == {}
    prepared = json.loads((staged["prepared"] / gain.PREPARED_FILE).read_text())
    assert report["corpus"] == prepared["corpus"] and report["tokenizer"] == prepared["tokenizer"]
    assert (pretrained / gain.SPM_FILE).read_bytes() == (staged["prepared"] / gain.SPM_FILE).read_bytes()
    assert gain.MODEL_FILE in staged["pretrained_files"] and gain.CONFIG_FILE in staged["pretrained_files"]
    assert not any(name.startswith(gain.CORPUS_DIR + "/") for name in staged["pretrained_files"])
    curve = report["pretraining"]["curve"]
    assert len(curve) >= 3 and curve[-1]["step"] == report["pretraining"]["steps"] > 0
    assert "rows: not run (--skip-rows)" in staged["pretrain_stdout"]
    assert "== pretraining curve" in staged["pretrain_stdout"]


@pytest.mark.slow
def test_rows_only_completes_the_report_from_the_saved_weights_without_pretraining_again(staged):
    report, rows = staged["rows_report"], staged["rows"]
    assert report["pretraining"] == staged["pretrain_report"]["pretraining"]
    assert (rows / gain.MODEL_FILE).is_file() and (rows / gain.SPM_FILE).is_file()  # rebuilt from weights/
    assert report["rows_skipped"] is False and report["rows_run"]["keras_backend"] == "tensorflow"
    task = report["tasks"]["pubmedqa"]
    assert [result["status"] for result in task["rows"].values()] == ["ok", "ok"]
    assert task["rows"]["albert_init"]["details"]["init"] == gain.MODEL_FILE
    assert set(task["init_minus_scratch"]) == set(task["metrics"])
    assert "== pubmedqa" in staged["rows_stdout"] and "   init - scratch " in staged["rows_stdout"]
    assert "rows run apart (--rows-only)" in staged["rows_stdout"]


@pytest.mark.slow  # builds the corpus and trains a vocabulary
def test_prepared_inputs_load_back_as_the_documents_and_vocabulary_they_were_made_from(tmp_path):
    settings = gain.PRETRAIN["smoke"]
    inputs = gain.build_inputs(str(tmp_path / "absent"), "smoke", settings, tmp_path, tmp_path / "corpus")
    files = gain.save_prepared(inputs, settings, tmp_path / "prepared")
    assert {f["file"] for f in files} == {gain.TOKENS_FILE, gain.SPM_FILE, gain.PREPARED_FILE}
    loaded = gain.load_prepared(tmp_path / "prepared", "smoke")
    assert loaded.train == inputs.train and loaded.heldout == inputs.heldout  # so the same instances
    assert loaded.model_proto == (tmp_path / gain.SPM_FILE).read_bytes() == inputs.model_proto
    assert (loaded.corpus, loaded.tokenizer, loaded.budget) == (inputs.corpus, inputs.tokenizer, "smoke")
    with np.load(tmp_path / "prepared" / gain.TOKENS_FILE) as arrays:
        assert arrays["train_ids"].dtype == np.int16  # 400 pieces
    with pytest.raises(ValueError, match="prepared for budget 'smoke', received --budget 'cpu'"):
        gain.load_prepared(tmp_path / "prepared", "cpu")


def test_packed_documents_unpack_to_the_same_lists():
    documents = [[[5, 6, 7], [], [9]], [[8]], [], [[10, 11], [12]]]
    packed = gain.pack_documents(documents)
    assert packed["ids"].tolist() == [5, 6, 7, 9, 8, 10, 11, 12]
    assert packed["sentence_lengths"].tolist() == [3, 0, 1, 1, 2, 1]
    assert packed["document_sentences"].tolist() == [3, 1, 0, 2]
    unpacked = gain.unpack_documents(packed["ids"].astype(np.int16), *(packed[k] for k in list(packed)[1:]))
    assert unpacked == documents and type(unpacked[0][0][0]) is int
    assert gain.unpack_documents(*gain.pack_documents([]).values()) == []


def test_stage_flags_that_contradict_each_other_are_refused():
    for argv in (
        ["--prepare-only", "--skip-rows"],
        ["--prepare-only", "--from-prepared", "p"],
        ["--rows-only"],
        ["--init", "p"],
        ["--rows-only", "--init", "p", "--skip-rows"],
    ):
        with pytest.raises(SystemExit):
            gain.parse_args(["--out", "o", *argv])
    args = gain.parse_args(["--out", "o", "--rows-only", "--init", "p"])
    assert args.rows_only and args.init == "p"


# -- the parts ---------------------------------------------------------------------------------------


def _documents(count: int) -> list[Document]:
    return [Document(f"source:{i}", "source", f"text {i}") for i in range(count)]


def test_heldout_documents_and_the_selection_depend_on_the_id_alone():
    documents = _documents(2000)
    train, heldout = gain.heldout_split(documents)
    assert 15 <= len(heldout) <= 70  # 2% of 2000 is 40
    assert {d.id for d in train}.isdisjoint(d.id for d in heldout) and len(train) + len(heldout) == 2000
    _, heldout_reversed = gain.heldout_split(documents[::-1])
    assert {d.id for d in heldout_reversed} == {d.id for d in heldout}
    chosen = gain.select_documents(documents, 100)
    assert len(chosen) == 100 and chosen == sorted(chosen, key=lambda d: int(d.id.split(":")[1]))
    assert {d.id for d in gain.select_documents(documents[::-1], 100)} == {d.id for d in chosen}
    assert gain.select_documents(documents, None) == documents


def _vocabulary_and_documents():
    from albert_keras.pretraining_data import MaskingConfig, Vocabulary

    pieces = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", *(f"\u2581w{i}" for i in range(60))]
    vocab = Vocabulary.from_pieces(pieces)
    rng = np.random.default_rng(3)
    documents = [
        [rng.integers(5, len(pieces), rng.integers(3, 9)).tolist() for _ in range(rng.integers(2, 7))]
        for _ in range(40)
    ]
    return vocab, documents, MaskingConfig(max_seq_length=24, max_predictions_per_seq=4)


@pytest.mark.slow  # each spawned worker imports Keras
def test_instances_are_the_same_for_any_number_of_worker_processes():
    vocab, documents, masking = _vocabulary_and_documents()
    one, other = gain.make_passes(documents, vocab, masking, seeds=[5, 6], workers=1)
    two, other_two = gain.make_passes(documents, vocab, masking, seeds=[5, 6], workers=2)

    def rows(arrays: dict) -> list[tuple]:
        names = sorted(arrays)
        return sorted(
            tuple(arrays[name][i].tobytes() for name in names) for i in range(len(arrays["token_ids"]))
        )

    assert rows(one) == rows(two) and len(one["token_ids"]) > 40
    assert one["token_ids"].dtype == np.int16 and one["token_ids"].shape[1] == 24
    assert rows(other) == rows(other_two) and rows(other) != rows(one)  # another pass masks anew


def test_batches_cycle_the_passes_and_resume_at_a_step():
    vocab, documents, masking = _vocabulary_and_documents()
    passes = gain.make_passes(documents, vocab, masking, seeds=[0, 1], workers=1)
    batches = gain.InstanceBatches(passes, batch_size=8, seed=0)
    stream = batches.batches()
    first = [next(stream) for _ in range(30)]
    x, y = first[0]
    assert x["token_ids"].shape == (8, 24) and x["token_ids"].dtype == np.int32
    assert y["mlm_weights"].dtype == np.float32 and y["sop_labels"].shape == (8,)
    resumed = next(batches.batches(7))
    assert all(np.array_equal(resumed[0][k], first[7][0][k]) for k in resumed[0])
    per_pass = len(passes[0]["token_ids"]) // 8
    assert not np.array_equal(first[0][0]["token_ids"], first[per_pass][0]["token_ids"])


def test_save_sharded_weights_keeps_every_file_under_the_limit_and_loads_back(tmp_path):
    import keras

    from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer

    keras.utils.set_random_seed(1)
    config = AlbertConfig.preset("tiny", vocab_size=300)
    model = AlbertPretrainer(AlbertBackbone(config))
    limit = 160 * 1024
    files = gain.save_sharded_weights(model, tmp_path / gain.WEIGHTS_DIR, max_file_bytes=limit)
    assert len(files) >= 3 and all(f.stat().st_size <= limit for f in files)
    (tmp_path / gain.CONFIG_FILE).write_text(config.to_json())
    rebuilt = gain.load_sharded_pretrainer(tmp_path)
    for saved, loaded in zip(model.get_weights(), rebuilt.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, loaded)


def test_paired_difference_is_init_minus_scratch_on_the_same_resamples():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 80)
    scratch = np.where(rng.random(80) < 0.5, gold, (gold + 1) % 3)
    init = np.where(rng.random(80) < 0.8, gold, (gold + 1) % 3)
    difference = gain.paired_difference("pair", gold, scratch, init, 3, samples=300)
    for metric, figure in difference.items():
        ours = quality_metrics.point_scores("pair", gold, init, 3)[metric]
        theirs = quality_metrics.point_scores("pair", gold, scratch, 3)[metric]
        assert figure["value"] == pytest.approx(ours - theirs)
        assert figure["low"] <= figure["value"] <= figure["high"]
    assert difference["accuracy"]["low"] > 0  # 0.8 against 0.5 on 80 questions: a clear gain
    same = gain.paired_difference("pair", gold, scratch, scratch.copy(), 3, samples=50)
    assert all(f == {"value": 0.0, "low": 0.0, "high": 0.0} for f in same.values())
    tags = [[0, 1, 2, 0], [1, 0], [0, 0, 1]] * 10
    entities = gain.paired_difference("entities", tags, [[0] * len(t) for t in tags], tags, 3, samples=50)
    assert entities["f1"]["value"] == pytest.approx(1.0) and entities["f1"]["low"] == pytest.approx(1.0)
