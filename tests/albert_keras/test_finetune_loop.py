import keras
import numpy as np
import pytest

from albert_keras import AlbertBackbone, AlbertClassifier, AlbertConfig
from albert_keras.finetune_loop import eval_interval, finetune, finetune_optimizer, warmup_linear_decay
from tests.albert_keras.util import backbone_inputs

SEQ, BATCH = 16, 4


def _classifier(seed: int = 0, learning_rate: float = 1e-3, total_steps: int = 12) -> AlbertClassifier:
    keras.utils.set_random_seed(seed)
    config = AlbertConfig.preset("tiny", vocab_size=50, max_position_embeddings=SEQ)
    model = AlbertClassifier(AlbertBackbone(config), num_labels=3)
    model.compile(optimizer=finetune_optimizer(warmup_linear_decay(learning_rate, total_steps)))
    return model


def _batches(count: int = 3, seed: int = 0):
    """A fixed list of (inputs, labels) batches; `finetune` cycles it."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        inputs = backbone_inputs(50, list(rng.integers(4, SEQ + 1, BATCH)), SEQ, seed=seed + i)
        out.append((inputs, rng.integers(0, 3, BATCH).astype("int32")))
    return out


def _weights(model) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]


class _Scripted:
    """An eval metric that follows a script, and the weights the model had at each evaluation."""

    def __init__(self, figures):
        self.figures = list(figures)
        self.seen: list[list[np.ndarray]] = []

    def __call__(self, model) -> float:
        self.seen.append(_weights(model))
        return self.figures[len(self.seen) - 1]


def test_the_weights_kept_are_those_of_the_best_evaluation_not_the_last(tmp_path):
    model, data = _classifier(), _batches()
    evaluate = _Scripted([0.2, 0.5, 0.9, 0.4, 0.3, 0.1])  # peaks at the third evaluation (step 6)
    result = finetune(
        model, lambda: data, total_steps=12, evaluate=evaluate, eval_every=2, checkpoint_dir=str(tmp_path)
    )
    assert result["best_step"] == 6 and result["best"] == 0.9 and not result["stopped_early"]
    assert model.optimizer.global_clipnorm == 1.0
    assert [e["step"] for e in result["evals"]] == [2, 4, 6, 8, 10, 12]
    kept, last = _weights(model), evaluate.seen[-1]
    for got, best in zip(kept, evaluate.seen[2], strict=True):
        np.testing.assert_array_equal(got, best)
    assert any(not np.array_equal(a, b) for a, b in zip(kept, last, strict=True))


def test_early_stopping_stops_after_patience_evaluations_without_a_gain(tmp_path):
    model = _classifier(total_steps=20)
    evaluate = _Scripted([0.3, 0.6, 0.6, 0.5, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9])
    result = finetune(
        model,
        lambda: _batches(),
        total_steps=20,
        evaluate=evaluate,
        eval_every=2,
        patience=2,
        checkpoint_dir=str(tmp_path),
    )
    # 0.6 at step 4 is the best; steps 6 and 8 bring no gain (a tie is no gain): stop at step 8.
    assert result["stopped_early"] and result["steps_trained"] == 8 and result["best_step"] == 4
    assert len(evaluate.seen) == 4
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4  # the best step's state


def test_a_run_killed_before_an_evaluation_resumes_with_the_same_curve_and_best(tmp_path):
    figures = [0.1, 0.4, 0.8, 0.2]
    unbroken = finetune(
        _classifier(total_steps=8),
        lambda: _batches(),
        total_steps=8,
        evaluate=_Scripted(figures),
        eval_every=2,
        checkpoint_dir=str(tmp_path / "unbroken"),
    )

    class Killed(Exception):
        pass

    def dies_at_third(model):
        if dies_at_third.calls == 2:
            raise Killed  # the checkpoint at step 6 is written, its evaluation never ran
        dies_at_third.calls += 1
        return figures[dies_at_third.calls - 1]

    dies_at_third.calls = 0
    with pytest.raises(Killed):
        finetune(
            _classifier(total_steps=8),
            lambda: _batches(),
            total_steps=8,
            evaluate=dies_at_third,
            eval_every=2,
            checkpoint_dir=str(tmp_path / "broken"),
        )
    rest = _Scripted(figures[2:])
    resumed = finetune(
        _classifier(seed=1, total_steps=8),  # other initial weights: the checkpoint must replace them
        lambda: _batches(),
        total_steps=8,
        evaluate=rest,
        eval_every=2,
        checkpoint_dir=str(tmp_path / "broken"),
    )
    assert len(rest.seen) == 2  # step 6 (on resume) and step 8
    assert [(e["step"], e["metric"]) for e in resumed["evals"]] == [
        (e["step"], e["metric"]) for e in unbroken["evals"]
    ]
    assert resumed["best_step"] == unbroken["best_step"] == 6


def test_the_same_seed_reproduces_a_run(tmp_path):
    def run(name):
        model = _classifier(seed=7)
        start = _weights(model)
        finetune(
            model,
            lambda: _batches(),
            total_steps=6,
            evaluate=lambda m: 0.0,
            eval_every=3,
            checkpoint_dir=str(tmp_path / name),
        )
        return start, _weights(model)

    (start, first), (_, again) = run("a"), run("b")
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(start, first, strict=True))  # it did train


def test_the_plain_recipe_keeps_the_last_step_and_evaluates_nothing(tmp_path):
    model = _classifier()
    result = finetune(
        model,
        lambda: _batches(),
        total_steps=6,
        evaluate=None,
        eval_every=3,
        checkpoint_dir=str(tmp_path),
        recipe="plain",
    )
    assert result["best_step"] == result["steps_trained"] == 6 and result["evals"] == []
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 6


def test_warmup_rises_to_the_peak_then_decays_linearly_to_zero():
    schedule = warmup_linear_decay(1e-3, 100, warmup_fraction=0.1)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 5, 10, 55, 100, 120)]
    np.testing.assert_allclose(rates, [0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0], atol=1e-9)


def test_eval_interval_divides_the_steps_and_bad_settings_are_refused(tmp_path):
    assert eval_interval(30, 10) == 3 and eval_interval(7, 3) == 1 and eval_interval(100, 3) == 25
    with pytest.raises(ValueError, match="multiple of eval_every"):
        finetune(
            _classifier(), _batches, total_steps=7, evaluate=None, eval_every=2, checkpoint_dir=str(tmp_path)
        )
    with pytest.raises(ValueError, match="needs `evaluate`"):
        finetune(
            _classifier(), _batches, total_steps=6, evaluate=None, eval_every=2, checkpoint_dir=str(tmp_path)
        )
