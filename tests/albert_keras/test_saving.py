"""`.keras` and `.weights.h5` round trips: identical outputs, loaded in safe mode."""

import keras
import numpy as np
import pytest

from albert_keras import (
    AlbertBackbone,
    AlbertClassifier,
    AlbertConfig,
    AlbertMultipleChoice,
    AlbertPretrainer,
    AlbertQuestionAnswering,
    AlbertTokenClassifier,
)
from albert_keras.smoke import random_pretraining_batch
from tests.albert_keras.util import backbone_inputs, randomize_weights

CONFIG = AlbertConfig.preset("tiny", num_hidden_layers=3, num_hidden_groups=2, sharing="attention")


def _inputs(kind):
    if kind == "pretrainer":
        return random_pretraining_batch(CONFIG, batch=2, seq=12, predictions=3)[0]
    x = backbone_inputs(CONFIG.vocab_size, [12, 7, 9, 4], 12)
    if kind == "multiple_choice":
        return {k: v.reshape(2, 2, 12) for k, v in x.items()}
    return x


BUILDERS = {
    "backbone": lambda b: b,
    "pretrainer": AlbertPretrainer,
    "single_label": lambda b: AlbertClassifier(b, num_labels=4),
    "multi_label": lambda b: AlbertClassifier(b, num_labels=3, problem_type="multi_label"),
    "regression": lambda b: AlbertClassifier(b, num_labels=1, problem_type="regression"),
    "token_classification": lambda b: AlbertTokenClassifier(b, num_labels=5),
    "question_answering": AlbertQuestionAnswering,
    "multiple_choice": lambda b: AlbertMultipleChoice(b),
}


def _flat(outputs):
    if isinstance(outputs, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    return {"output": keras.ops.convert_to_numpy(outputs)}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_keras_file_round_trip_in_safe_mode(kind, tmp_path):
    model = BUILDERS[kind](AlbertBackbone(CONFIG))
    randomize_weights(model, seed=21, scale=0.1)
    x = _inputs(kind)
    expected = _flat(model(x))
    path = str(tmp_path / f"{kind}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in loaded._flatten_layers())
    assert len(loaded.weights) == len(model.weights)
    actual = _flat(loaded(x))
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)
    if kind != "backbone":
        assert loaded.get_config() == model.get_config()
        assert loaded.backbone.config == CONFIG


@pytest.mark.parametrize("kind", ["pretrainer", "single_label"])
def test_weights_file_round_trip(kind, tmp_path):
    model = BUILDERS[kind](AlbertBackbone(CONFIG))
    randomize_weights(model, seed=22, scale=0.1)
    x = _inputs(kind)
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    fresh = BUILDERS[kind](AlbertBackbone(CONFIG))
    before = _flat(fresh(x))
    fresh.load_weights(path)
    for name, value in _flat(model(x)).items():
        np.testing.assert_array_equal(_flat(fresh(x))[name], value, err_msg=name)
        assert not np.array_equal(before[name], value)  # the load did change the model


def test_loaded_pretrainer_keeps_the_mlm_decoder_tied(tmp_path):
    model = AlbertPretrainer(AlbertBackbone(CONFIG))
    path = str(tmp_path / "pretrainer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.mlm_head.token_embedding is loaded.backbone.token_embedding
    assert loaded.count_params() == model.count_params()


def test_compiled_task_reloads_with_its_loss(tmp_path):
    model = AlbertClassifier(AlbertBackbone(CONFIG), num_labels=3)
    model.compile()
    x = backbone_inputs(CONFIG.vocab_size, [12, 7], 12)
    y = np.array([0, 2])
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    actual = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert actual.keys() == expected.keys() and abs(actual["loss"] - expected["loss"]) < 1e-6
