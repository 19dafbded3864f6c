"""Activations by the names used in ALBERT configs (HF naming; see config.ACTIVATIONS)."""

from __future__ import annotations

from collections.abc import Callable

import keras


def gelu_new(x):
    """GELU, tanh approximation: what google-research's ALBERT computes and HF calls gelu_new."""
    return keras.activations.gelu(x, approximate=True)


def gelu(x):
    """GELU, exact erf form."""
    return keras.activations.gelu(x, approximate=False)


_BY_NAME: dict[str, Callable] = {
    "gelu_new": gelu_new,
    "gelu": gelu,
    "relu": keras.activations.relu,
    "tanh": keras.activations.tanh,
    "swish": keras.activations.silu,
    "silu": keras.activations.silu,
}


def get_activation(name: str) -> Callable:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(_BY_NAME)}") from None
