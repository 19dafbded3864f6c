"""The Trainers' backend choice and the child process launcher (components/trainer/child.py)."""

from __future__ import annotations

import pytest

from components.trainer import child


def test_auto_takes_jax_for_one_gpu_and_tensorflow_elsewhere(monkeypatch):
    monkeypatch.setattr(child, "jax_installed", lambda: True)
    assert child.choose_backend(None, gpus=1) == "jax"
    assert child.choose_backend("AUTO", gpus=1) == "jax"
    assert child.choose_backend("auto", gpus=0) == "tensorflow"  # CPU: TensorFlow trains faster
    assert child.choose_backend("auto", gpus=8) == "tensorflow"  # MirroredStrategy uses all eight
    assert child.choose_backend("auto", gpus=1, cluster_tasks=2) == "tensorflow"
    assert child.choose_backend("jax", gpus=0) == "jax"
    assert child.choose_backend("tensorflow", gpus=1) == "tensorflow"
    monkeypatch.setattr(child, "jax_installed", lambda: False)
    assert child.choose_backend("auto", gpus=1) == "tensorflow"


def test_jax_refuses_a_cluster_a_missing_jax_and_unknown_backends_are_named(monkeypatch):
    monkeypatch.setattr(child, "jax_installed", lambda: True)
    with pytest.raises(ValueError, match="set training_backend to 'tensorflow' for multi-worker runs"):
        child.choose_backend("jax", gpus=8, cluster_tasks=2)
    with pytest.raises(ValueError, match=r"training_backend must be one of .* received 'torch'"):
        child.choose_backend("torch", gpus=1)
    monkeypatch.setattr(child, "jax_installed", lambda: False)
    with pytest.raises(ValueError, match="JAX is not installed"):
        child.choose_backend("jax", gpus=1)


def test_the_child_runs_a_function_under_the_backend_and_returns_its_result(tmp_path):
    result = child.run_child("tests.components.trainer.child_target:report", {"x": 3}, str(tmp_path), "jax")
    assert result == {"backend": "jax", "x": 3, "tensorflow_imported": False}


def test_a_failing_child_names_its_status_and_last_lines(tmp_path):
    with pytest.raises(child.ChildFailed, match=r"(?s)status 1.*ValueError: refused x=-1"):
        child.run_child("tests.components.trainer.child_target:report", {"x": -1}, str(tmp_path), "jax")
