"""The pretraining Trainer's start: a new backbone, or one continued from a public checkpoint whose
vocabulary must be the pipeline tokenizer's."""

from __future__ import annotations

import numpy as np
import pytest

from albert_keras import AlbertBackbone, AlbertConfig
from albert_keras.convert.hf_files import save_hf_model
from components.trainer.pretrain import PRETRAINING_FILE, continuation, initial_backbone
from tests.albert_keras.util import backbone_inputs, randomize_weights


def test_continues_from_an_hf_checkpoint_with_the_same_vocabulary(tmp_path):
    config = AlbertConfig.preset("tiny", vocab_size=96)
    public = AlbertBackbone(config)
    randomize_weights(public, seed=4)
    save_hf_model(public, str(tmp_path / "albert"))
    loaded = initial_backbone(
        config, {"init_checkpoint": str(tmp_path / "albert"), "init_checkpoint_format": "hf"}
    )
    x = backbone_inputs(96, [7, 3], 7)
    np.testing.assert_array_equal(loaded(x)["sequence_output"], public(x)["sequence_output"])
    assert initial_backbone(config, {"init_checkpoint": ""}).config == config
    with pytest.raises(ValueError, match="vocabulary of 96, the pipeline's tokenizer 120"):
        initial_backbone(config.replace(vocab_size=120), {"init_checkpoint": str(tmp_path / "albert")})


def test_continues_the_last_pretrained_model_only_with_the_same_vocabulary(tmp_path):
    import json

    assert continuation(None, "abc") == (None, "from scratch")
    base = tmp_path / "base"
    base.mkdir()
    base_model, start = continuation(str(base), "abc")
    assert base_model is None and start.startswith("from scratch") and PRETRAINING_FILE in start
    (base / PRETRAINING_FILE).write_text(json.dumps({"vocabulary_sha256": "abc", "steps": 30}))
    base_model, start = continuation(str(base), "abc")
    assert base_model["steps"] == 30 and start.startswith("continued from") and "30 steps" in start
    base_model, start = continuation(str(base), "def")
    assert base_model is None and "another vocabulary" in start
