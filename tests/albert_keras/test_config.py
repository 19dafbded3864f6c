import json

import pytest

from albert_keras.config import PRESETS, AlbertConfig

# Configuration only: no backend runs here, so the JAX pass of scripts/test.sh skips it.
pytestmark = pytest.mark.backend_independent

# google-research/albert's albert_config.json for albert_base v2, field for field.
GOOGLE_BASE_V2 = {
    "attention_probs_dropout_prob": 0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0,
    "embedding_size": 128,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "num_hidden_groups": 1,
    "net_structure_type": 0,
    "gap_size": 0,
    "num_memory_blocks": 0,
    "inner_group_num": 1,
    "down_scale_factor": 1,
    "type_vocab_size": 2,
    "vocab_size": 30000,
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip_of_every_preset(name):
    config = AlbertConfig.preset(name)
    text = config.to_json()
    assert AlbertConfig.from_json(text) == config
    assert json.loads(text)["num_hidden_groups"] == config.num_hidden_groups


def test_google_research_config_loads_with_its_gelu_meaning_the_tanh_form():
    config = AlbertConfig.from_google_dict(GOOGLE_BASE_V2)
    assert config == AlbertConfig.preset("base-v2")
    assert config.hidden_act == "gelu_new"
    # Read as an HF-style file, "gelu" keeps its HF meaning: the exact erf form.
    assert AlbertConfig.from_dict(GOOGLE_BASE_V2).hidden_act == "gelu"


def test_json_file_round_trip(tmp_path):
    path = tmp_path / "albert_config.json"
    config = AlbertConfig.preset("large-v1", sharing="ffn")
    path.write_text(config.to_json())
    assert AlbertConfig.from_json_file(str(path)) == config
    written = json.loads(path.read_text())
    for name in GOOGLE_BASE_V2:  # google-research's names, so its tools read the file back
        if name not in ("net_structure_type", "gap_size", "num_memory_blocks", "down_scale_factor"):
            assert name in written


def test_presets_have_paper_sizes_and_dropout_by_version():
    sizes = {
        "base": (768, 12, 12),
        "large": (1024, 24, 16),
        "xlarge": (2048, 24, 16),
        "xxlarge": (4096, 12, 64),
    }
    for size, (hidden, layers, heads) in sizes.items():
        for version, rate in (("v1", 0.1), ("v2", 0.0)):
            config = AlbertConfig.preset(f"{size}-{version}")
            assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
                hidden,
                layers,
                heads,
            )
            assert config.intermediate_size == 4 * hidden
            assert config.hidden_dropout_prob == config.attention_probs_dropout_prob == rate
    assert AlbertConfig.preset("base") == AlbertConfig.preset("base-v2")


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size=30 and num_attention_heads=4"),
        (dict(num_hidden_layers=2, num_hidden_groups=3), "num_hidden_groups=3 and num_hidden_layers=2"),
        (dict(sharing="none", num_hidden_groups=2), "num_hidden_groups=2"),
        (dict(sharing="some"), "sharing='some'"),
        (dict(hidden_act="gelu_fast"), "hidden_act='gelu_fast'"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob=1.0"),
        (dict(vocab_size=0), "vocab_size=0"),
        (dict(inner_group_num=1.5), "inner_group_num=1.5"),
    ],
)
def test_invalid_combinations_fail_naming_the_values(changes, message):
    with pytest.raises(ValueError) as error:
        AlbertConfig(**{**AlbertConfig().to_dict(), **changes})
    assert message in str(error.value)


def test_unknown_and_unsupported_fields_are_rejected():
    with pytest.raises(ValueError, match="hidden_sise"):
        AlbertConfig.from_dict({"hidden_sise": 768})
    with pytest.raises(ValueError, match="net_structure_type=1"):
        AlbertConfig.from_dict({"net_structure_type": 1})
    with pytest.raises(ValueError, match="Unknown ALBERT preset 'huge'"):
        AlbertConfig.preset("huge")


def test_group_of_layer_follows_google_research():
    config = AlbertConfig(num_hidden_layers=12, num_hidden_groups=5)
    assert [config.group_of_layer(i) for i in range(12)] == [int(i / 12 * 5) for i in range(12)]
    assert {config.group_of_layer(i) for i in range(12)} == set(range(5))
