"""Assigning named arrays to a model's variables, checking every name and shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import keras
import numpy as np


def variables_by_path(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's distinct weights keyed by variable path (shared weights appear once)."""
    return {v.path: v for v in model.weights}


def assign_weights(
    model: keras.Model, arrays: Mapping[str, np.ndarray], source: str, unused: Iterable[str] = ()
) -> None:
    """Sets every weight of `model` from `arrays` (keyed by variable path).

    All-or-nothing: a weight with no array, an array with no weight, or a shape mismatch is an
    error that names each offending path, raised before anything is assigned. Only the paths in
    `unused` (weights that the model's outputs do not depend on) may be absent; they keep their values.
    """
    variables = variables_by_path(model)
    missing = sorted(set(variables) - set(arrays) - set(unused))
    unknown = sorted(set(arrays) - set(variables))
    mismatched = [
        f"{path}: {source} has {tuple(np.shape(arrays[path]))}, model has {tuple(variables[path].shape)}"
        for path in sorted(set(variables) & set(arrays))
        if tuple(np.shape(arrays[path])) != tuple(variables[path].shape)
    ]
    problems = []
    if missing:
        problems.append(f"weights missing from {source}: {missing}")
    if unknown:
        problems.append(f"{source} weights the model does not have: {unknown}")
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise ValueError(f"Cannot load {source} into {model.name}: " + " | ".join(problems))
    for path, variable in variables.items():
        if path not in arrays:
            continue
        variable.assign(np.asarray(arrays[path], dtype=variable.dtype))
