"""bench/train_throughput.py on CPU with the tiny config, and JAX-trained weights served by TensorFlow.

The GPU figures themselves are in bench/RESULTS.md; these tests keep the script working and check what
the figures rest on: the FLOP count, equal models on both sides, and that what ours trains under JAX
is the model the TensorFlow side loads and exports.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "train_throughput.py"
HF_PYTHON = REPO / ".venv-hf" / "bin" / "python"
spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
train_throughput = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_throughput)


def _bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # ours needs no TensorFlow; neither does the parent
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "tiny", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_flop_count_reproduces_the_reference_shares_of_peak():
    # The project's notes give HF compiled at 1,050 seq/s (64 x 512) = 32.1% and 4,298 seq/s
    # (128 x 128) = 30.5% of the H100's 989 TFLOP/s, counted the way the benchmark counts.
    from albert_keras.config import AlbertConfig

    base = AlbertConfig.preset("base").to_dict()
    assert train_throughput.flops_per_sequence(base, 512) * 1050 / 989e12 == pytest.approx(0.321, abs=0.001)
    assert train_throughput.flops_per_sequence(base, 128) * 4298 / 989e12 == pytest.approx(0.305, abs=0.001)
    assert train_throughput.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert train_throughput.peak_flops("cpu") is None


def test_random_batch_masks_distinct_positions_and_labels_them():
    config = {"vocab_size": 100}
    data = train_throughput.random_batch(config, batch=3, seq=32)
    assert data["mask_positions"].shape == (3, train_throughput.max_predictions(32)) == (3, 5)
    for row in range(3):
        positions = data["mask_positions"][row]
        assert len(set(positions)) == len(positions) and positions.min() >= 1  # never [CLS]
        np.testing.assert_array_equal(data["mlm_labels"][row], data["token_ids"][row][positions])


def test_tiny_run_measures_ours_and_hf_on_the_same_model(tmp_path):
    if not HF_PYTHON.exists():
        pytest.fail("CI must run the HF side: .venv-hf is missing (scripts/setup_hf_env.sh)")
    out = tmp_path / "result.json"
    done = _bench(
        "--shape", "4x32", "--steps", "2", "--warmup", "1", "--hf-python", str(HF_PYTHON), "--json", str(out)
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {r["impl"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"ours", "hf-eager", "hf-compile"}
    # The same architecture on both sides: equal parameter counts, and a first loss near
    # ln(vocab) + ln(2) for an untrained model (MLM over 128 ids + sentence order).
    assert len({r["parameters"] for r in results.values()}) == 1
    for r in results.values():
        assert r["sequences_per_second"] > 0 and r["tokens_per_second"] == pytest.approx(
            32 * r["sequences_per_second"]
        )
        assert abs(r["final_loss"] - (np.log(128) + np.log(2))) < 0.5
    assert results["ours"]["versions"]["keras"] == keras.__version__
    ratio = results["ours"]["sequences_per_second"] / results["hf-compile"]["sequences_per_second"]
    assert results["ours"]["ratio_to_hf-compile"] == pytest.approx(ratio)
    assert "| ours | 4 x 32 |" in done.stdout


def test_bad_shape_is_refused_before_anything_runs():
    done = _bench("--shape", "4x100")  # the tiny preset has 64 positions
    assert done.returncode != 0 and "exceeds the preset's max_position_embeddings 64" in done.stderr
    done = _bench("--shape", "64by512")
    assert done.returncode != 0 and "shape must be BATCHxSEQ" in done.stderr


def test_weights_trained_under_jax_load_and_export_under_tensorflow(tmp_path):
    # Ours trains a few steps under KERAS_BACKEND=jax (float32, so both backends can agree tightly)
    # and saves the model with its outputs on the training batch.
    saved = tmp_path / "pretrainer.keras"
    done = _bench(
        "--impl", "ours", "--shape", "4x32", "--steps", "3", "--warmup", "1", "--precision", "fp32",
        "--save-model", str(saved),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reference = dict(np.load(saved.with_suffix(".npz")))
    inputs = {k: reference[k] for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}

    # This process runs TensorFlow: the .keras file loads into the TF-backend model ...
    assert keras.backend.backend() == "tensorflow"
    import albert_keras  # registers the classes that the file names

    model = keras.saving.load_model(saved)
    untrained = albert_keras.AlbertPretrainer(albert_keras.AlbertBackbone(model.backbone.config))
    outputs = model.predict(inputs, verbose=0)
    for name in ("mlm_logits", "sop_logits"):
        np.testing.assert_allclose(outputs[name], reference[name], atol=2e-5, rtol=1e-5)
        # ... with the trained weights, not fresh ones: the check would notice a failed load.
        assert np.abs(untrained.predict(inputs, verbose=0)[name] - reference[name]).max() > 1e-3

    # ... and its SavedModel export serves the same outputs.
    export_dir = tmp_path / "export"
    model.export(str(export_dir), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(export_dir))  # held: its variables die with it
    served = reloaded.serve({k: tf.constant(v) for k, v in inputs.items()})
    for name in ("mlm_logits", "sop_logits"):
        np.testing.assert_allclose(served[name].numpy(), reference[name], atol=2e-5, rtol=1e-5)
