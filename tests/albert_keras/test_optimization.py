import keras
import numpy as np
import pytest

from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
from albert_keras.optimization import Lamb, WarmupPolynomialDecay


def reference_schedule(step, peak, total, warmup, end=0.0, power=1.0):
    """google-research/albert optimization.py, in numpy."""
    decayed = (peak - end) * (1 - min(step, total) / total) ** power + end
    return peak * step / warmup if warmup and step < warmup else decayed


def reference_lamb(params, grads_per_step, lrs, wd, b1, b2, eps, excluded):
    """google-research/albert lamb_optimizer.py's update, in numpy (float64)."""
    params = {k: v.astype("float64") for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for grads, lr in zip(grads_per_step, lrs, strict=True):
        for name, w in params.items():
            g = grads[name].astype("float64")
            m[name] = b1 * m[name] + (1 - b1) * g
            v[name] = b2 * v[name] + (1 - b2) * g * g
            update = m[name] / (np.sqrt(v[name]) + eps)
            if not excluded(name):
                update = update + wd * w
                w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
                ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            else:
                ratio = 1.0
            params[name] = w - lr * ratio * update
    return params


def test_schedule_warms_up_linearly_then_decays_polynomially():
    schedule = WarmupPolynomialDecay(1e-3, total_steps=100, warmup_steps=10, power=1.0)
    for step in (0, 1, 5, 9, 10, 11, 50, 99, 100, 150):
        assert abs(float(schedule(step)) - reference_schedule(step, 1e-3, 100, 10)) < 1e-9, step
    assert float(schedule(0)) == 0.0  # google's first step has learning rate 0
    square = WarmupPolynomialDecay(2e-3, total_steps=40, warmup_steps=0, power=2.0, end_learning_rate=1e-4)
    assert abs(float(square(20)) - reference_schedule(20, 2e-3, 40, 0, 1e-4, 2.0)) < 1e-9
    with pytest.raises(ValueError, match="warmup_steps=50, total_steps=10"):
        WarmupPolynomialDecay(1e-3, total_steps=10, warmup_steps=50)


def test_lamb_matches_the_reference_update_rule_over_several_steps():
    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, name="dense")(inputs)
    x = keras.layers.LayerNormalization(name="layer_norm")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)
    for variable in model.weights:
        variable.assign(rng.normal(size=tuple(variable.shape)).astype("float32"))
    variables = model.trainable_variables
    params = {v.path: np.asarray(v.numpy()) for v in variables}
    steps = 6
    grads = [
        {name: rng.normal(size=p.shape).astype("float32") for name, p in params.items()} for _ in range(steps)
    ]
    schedule = WarmupPolynomialDecay(0.05, total_steps=10, warmup_steps=2)
    optimizer = Lamb(learning_rate=schedule, weight_decay_rate=0.1, epsilon=1e-6)
    for step_grads in grads:
        optimizer.apply_gradients([(step_grads[v.path], v) for v in variables])
    lrs = [reference_schedule(step, 0.05, 10, 2) for step in range(steps)]
    excluded = lambda name: "layer_norm" in name or "bias" in name  # noqa: E731
    expected = reference_lamb(params, grads, lrs, 0.1, 0.9, 0.999, 1e-6, excluded)
    for v in variables:
        np.testing.assert_allclose(v.numpy(), expected[v.path], rtol=1e-5, atol=1e-6, err_msg=v.path)
        assert not np.allclose(v.numpy(), params[v.path])  # every variable moved


def test_layer_norm_and_biases_get_no_decay_and_no_trust_ratio():
    model = AlbertPretrainer(AlbertBackbone(AlbertConfig.preset("tiny")))
    optimizer = Lamb()
    excluded = [v.path for v in model.trainable_variables if not optimizer.decays(v)]
    adapted = [v.path for v in model.trainable_variables if optimizer.adapts(v)]
    assert excluded and all(p.endswith(("/bias", "/gamma", "/beta")) for p in excluded)
    assert "mlm_head/bias" in excluded and "embeddings_layer_norm/gamma" in excluded
    assert sorted(adapted) == sorted(
        v.path for v in model.trainable_variables if v.path.endswith(("/kernel", "/embeddings"))
    )


def test_lamb_trains_and_round_trips_through_config(tmp_path):
    from albert_keras.smoke import random_pretraining_batch

    config = AlbertConfig.preset("tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = AlbertPretrainer(AlbertBackbone(config))
    x, y = random_pretraining_batch(config, batch=8, seq=16, predictions=3, seed=1)
    model.compile(optimizer=Lamb(WarmupPolynomialDecay(5e-2, total_steps=60, warmup_steps=3)))
    losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(30)]
    assert losses[-1] < 0.85 * losses[0]
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.optimizer, Lamb)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
