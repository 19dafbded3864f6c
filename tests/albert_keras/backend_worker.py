"""Run by test_backends.py in a subprocess under another Keras backend.

    KERAS_BACKEND=jax python -m tests.albert_keras.backend_worker \
        CONFIG.json WEIGHTS.weights.h5 INPUTS.npz OUT.npz

Builds the pretraining model from the config, loads the weights, and writes its outputs and the
backbone's for the inputs, with the name of the backend that computed them.
"""

import sys

import keras
import numpy as np

from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer


def main(config_path: str, weights_path: str, inputs_path: str, out_path: str) -> None:
    with open(config_path) as f:
        config = AlbertConfig.from_json(f.read())
    model = AlbertPretrainer(AlbertBackbone(config))
    model.load_weights(weights_path)
    inputs = dict(np.load(inputs_path))
    outputs = {**model(inputs), **model.backbone({k: v for k, v in inputs.items() if k != "mask_positions"})}
    arrays = {name: keras.ops.convert_to_numpy(value) for name, value in outputs.items()}
    np.savez(out_path, backend=np.array(keras.backend.backend()), **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:])
