"""Backend independence: no TensorFlow at import, the same numbers on TF and JAX, bf16 and XLA."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
from albert_keras.smoke import random_pretraining_batch
from tests.albert_keras.util import INPUT_NAMES, max_abs_diff, randomize_weights

# Runs each backend in its own subprocess already: the JAX pass of scripts/test.sh skips it.
pytestmark = pytest.mark.backend_independent

CONFIG = AlbertConfig.preset("tiny")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code_or_args, backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend}
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_model_library_imports_no_tensorflow():
    code = (
        "import importlib, pkgutil, sys, albert_keras\n"
        "for m in pkgutil.walk_packages(albert_keras.__path__, 'albert_keras.'):\n"
        "    importlib.import_module(m.name)\n"
        "heavy = ('tensorflow', 'keras_hub', 'tf_keras')\n"
        "loaded = sorted(n for n in sys.modules if n.split('.')[0] in heavy)\n"
        "print('modules:', len([n for n in sys.modules if n.startswith('albert_keras')]), 'tf:', loaded)\n"
    )
    result = _run(code, "jax")
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("tf: []"), last
    assert int(last.split()[1]) >= 10  # every module of the library was imported


def test_tensorflow_and_jax_give_the_same_outputs(tmp_path):
    """This process's backend computes, the other backend recomputes in a subprocess from saved weights."""
    here = keras.backend.backend()
    other = "jax" if here == "tensorflow" else "tensorflow"
    model = AlbertPretrainer(AlbertBackbone(CONFIG))
    randomize_weights(model, seed=11, scale=0.1)
    x, _ = random_pretraining_batch(CONFIG, batch=3, seq=24, predictions=4, seed=12)
    (tmp_path / "config.json").write_text(CONFIG.to_json())
    model.save_weights(str(tmp_path / "model.weights.h5"))
    np.savez(tmp_path / "inputs.npz", **x)
    expected = {**model(x), **model.backbone({k: x[k] for k in INPUT_NAMES})}

    args = ["-m", "tests.albert_keras.backend_worker"]
    files = [str(tmp_path / name) for name in ("config.json", "model.weights.h5", "inputs.npz", "out.npz")]
    result = _run(args + files, other)
    assert result.returncode == 0, result.stderr[-3000:]
    actual = np.load(tmp_path / "out.npz")
    assert str(actual["backend"]) == other
    for name in ("sequence_output", "pooled_output", "mlm_logits", "sop_logits"):
        assert max_abs_diff(expected[name], actual[name]) <= 1e-5, name


def test_mixed_bfloat16_computes_in_bf16_with_float32_weights():
    inputs_x, y = random_pretraining_batch(CONFIG, batch=4, seq=16, predictions=3, seed=13)
    full = AlbertPretrainer(AlbertBackbone(CONFIG))
    mixed = AlbertPretrainer(AlbertBackbone(CONFIG, dtype="mixed_bfloat16"))
    mixed.set_weights(full.get_weights())
    assert {v.dtype for v in mixed.weights} == {"float32"}
    encoded = mixed.backbone({k: inputs_x[k] for k in INPUT_NAMES})
    assert encoded["sequence_output"].dtype == "bfloat16"
    reference = full.backbone({k: inputs_x[k] for k in INPUT_NAMES})
    assert max_abs_diff(encoded["pooled_output"], reference["pooled_output"]) < 0.05
    assert max_abs_diff(mixed(inputs_x)["sop_logits"], full(inputs_x)["sop_logits"]) < 0.05

    mixed.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = np.asarray(mixed.backbone.embedding_projection.kernel.numpy())
    loss = mixed.train_on_batch(inputs_x, y, return_dict=True)["loss"]
    assert np.isfinite(loss)
    assert mixed.backbone.embedding_projection.kernel.dtype == "float32"
    assert max_abs_diff(before, mixed.backbone.embedding_projection.kernel.numpy()) > 0


def test_global_mixed_policy_is_honoured():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        backbone = AlbertBackbone(CONFIG)
    finally:
        keras.config.set_dtype_policy("float32")
    x, _ = random_pretraining_batch(CONFIG, batch=2, seq=8, predictions=1)
    assert backbone({k: x[k] for k in INPUT_NAMES})["sequence_output"].dtype == "bfloat16"


def test_jit_compile_gives_the_eager_results():
    model = AlbertPretrainer(
        AlbertBackbone(CONFIG.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    )
    x, y = random_pretraining_batch(CONFIG, batch=4, seq=16, predictions=3, seed=14)
    eager = model(x)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    assert model.jit_compile is True
    compiled = model.predict_on_batch(x)
    for name in ("mlm_logits", "sop_logits"):
        assert max_abs_diff(eager[name], compiled[name]) <= 1e-5
    losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(3)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
