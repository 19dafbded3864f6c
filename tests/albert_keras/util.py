"""Shared helpers for the model-library tests: inputs with padding, and weights that matter."""

from __future__ import annotations

import keras
import numpy as np

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def backbone_inputs(vocab_size: int, lengths: list[int], seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch with one row per entry of `lengths`: real tokens then padding (id 0) up to `seq`."""
    rng = np.random.default_rng(seed)
    batch = len(lengths)
    padding_mask = (np.arange(seq)[None, :] < np.array(lengths)[:, None]).astype("int32")
    token_ids = rng.integers(2, vocab_size, size=(batch, seq)).astype("int32") * padding_mask
    segment_ids = ((np.arange(seq)[None, :] >= np.array(lengths)[:, None] // 2) * padding_mask).astype(
        "int32"
    )
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}


def randomize_weights(model: keras.Model, seed: int = 0, scale: float = 0.2) -> None:
    """Every weight random, LayerNorm and biases included, so no weight can be wrong unnoticed."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.normal(0.0, scale, size=tuple(variable.shape))
        if variable.path.endswith("/gamma"):
            value += 1.0
        variable.assign(value.astype(variable.dtype))


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype="float64") - np.asarray(b, dtype="float64"))))
