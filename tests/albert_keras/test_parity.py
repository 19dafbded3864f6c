"""Numerical parity with the two reference implementations, float32, random weights, padding."""

import json
import pathlib

import numpy as np
import pytest

from albert_keras import AlbertBackbone, AlbertConfig
from albert_keras.convert.hf import hf_backbone_state, load_hf_backbone_weights
from albert_keras.convert.keras_hub import load_keras_hub_backbone_weights
from tests.albert_keras.util import backbone_inputs, max_abs_diff, randomize_weights

GOLDEN = pathlib.Path(__file__).parents[1] / "fixtures" / "hf_albert_golden.npz"
TOLERANCE = 1e-5


def _golden():
    data = np.load(GOLDEN)
    meta = json.loads(str(data["meta"]))
    return data, meta


def _hf_state(data, name):
    prefix = f"{name}/weights/"
    return {key[len(prefix) :]: data[key] for key in data.files if key.startswith(prefix)}


def _golden_backbone(data, meta, name):
    backbone = AlbertBackbone(AlbertConfig.from_dict(meta["configs"][name]))
    load_hf_backbone_weights(backbone, _hf_state(data, name))
    return backbone


@pytest.mark.parametrize("name", ["groups2_inner2", "layers3_groups2"])
def test_matches_hf_transformers_albert_model(name):
    """Against outputs that HF transformers' AlbertModel (PyTorch, CPU) computed for the same weights
    and inputs; tests/fixtures/make_hf_golden.py wrote them."""
    data, meta = _golden()
    backbone = _golden_backbone(data, meta, name)
    batches = sorted({key.split("/")[1] for key in data.files if key.startswith(f"{name}/len")})
    assert len(batches) == 2
    for batch in batches:
        prefix = f"{name}/{batch}"
        inputs = {k: data[f"{prefix}/{k}"] for k in ("token_ids", "segment_ids", "padding_mask")}
        assert inputs["padding_mask"].min() == 0  # the batch has padding
        outputs = backbone(inputs)
        sequence = max_abs_diff(outputs["sequence_output"], data[f"{prefix}/sequence_output"])
        pooled = max_abs_diff(outputs["pooled_output"], data[f"{prefix}/pooled_output"])
        print(f"HF {prefix}: max |diff| sequence {sequence:.2e}, pooled {pooled:.2e}")  # pytest -s shows it
        assert sequence <= TOLERANCE and pooled <= TOLERANCE


def test_hf_state_dict_round_trip_is_bit_identical():
    data, meta = _golden()
    state = _hf_state(data, "groups2_inner2")
    exported = hf_backbone_state(_golden_backbone(data, meta, "groups2_inner2"))
    assert sorted(exported) == sorted(state)
    for key, value in state.items():
        assert exported[key].dtype == value.dtype and np.array_equal(exported[key], value), key


def test_hf_import_names_every_problem():
    data, meta = _golden()
    state = _hf_state(data, "groups2_inner2")
    backbone = AlbertBackbone(AlbertConfig.from_dict(meta["configs"]["groups2_inner2"]))
    missing = {k: v for k, v in state.items() if k != "pooler.bias"}
    with pytest.raises(ValueError, match="pooler/bias"):
        load_hf_backbone_weights(backbone, missing)
    with pytest.raises(ValueError, match=r"encoder\.extra\.weight"):
        load_hf_backbone_weights(backbone, {**state, "encoder.extra.weight": np.zeros(3)})
    wrong = dict(state)
    wrong["embeddings.word_embeddings.weight"] = np.zeros((5, 16), "float32")
    with pytest.raises(ValueError, match=r"token_embedding/embeddings: HF state dict has \(5, 16\)"):
        load_hf_backbone_weights(backbone, wrong)
    prefixed = {f"albert.{k}": v for k, v in state.items()}
    load_hf_backbone_weights(backbone, prefixed)  # as in AlbertForPreTraining


@pytest.mark.parametrize("layers, groups, inner", [(4, 2, 2), (6, 1, 1), (3, 3, 1)])
def test_matches_keras_hub_albert_backbone(layers, groups, inner):
    keras_hub = pytest.importorskip("keras_hub")
    theirs = keras_hub.models.AlbertBackbone(
        vocabulary_size=101,
        num_layers=layers,
        num_heads=4,
        embedding_dim=16,
        hidden_dim=32,
        intermediate_dim=48,
        num_groups=groups,
        num_inner_repetitions=inner,
        max_sequence_length=40,
    )
    randomize_weights(theirs, seed=layers * 10 + groups)
    config = AlbertConfig(
        vocab_size=101, num_hidden_layers=layers, num_attention_heads=4, embedding_size=16, hidden_size=32,
        intermediate_size=48, num_hidden_groups=groups, inner_group_num=inner, max_position_embeddings=40,
    )  # fmt: skip
    ours = AlbertBackbone(config)
    load_keras_hub_backbone_weights(ours, theirs)
    for lengths, seq in (([17, 9, 1], 17), ([40, 33], 40)):
        inputs = backbone_inputs(101, lengths, seq, seed=seq)
        expected, actual = theirs(inputs), ours(inputs)
        sequence = max_abs_diff(expected["sequence_output"], actual["sequence_output"])
        pooled = max_abs_diff(expected["pooled_output"], actual["pooled_output"])
        case = f"L{layers} G{groups} I{inner} seq {seq}"
        print(f"keras-hub {case}: max |diff| sequence {sequence:.2e}, pooled {pooled:.2e}")
        assert sequence <= TOLERANCE and pooled <= TOLERANCE
