import keras
import numpy as np
import pytest

from albert_keras.activations import get_activation
from albert_keras.backbone import AlbertBackbone
from albert_keras.config import AlbertConfig
from albert_keras.embeddings import SmallTableEmbedding
from albert_keras.encoder import layer_plan
from tests.albert_keras.util import backbone_inputs, max_abs_diff, randomize_weights

# The backbone sizes (embeddings, projection, transformer, pooler) of the published checkpoints.
PUBLISHED_COUNTS = {"base": 11_683_584, "large": 17_683_968, "xlarge": 58_724_864, "xxlarge": 222_595_584}


@pytest.mark.slow
@pytest.mark.parametrize("size", sorted(PUBLISHED_COUNTS))
def test_parameter_counts_match_the_published_models(size):
    keras.backend.clear_session()
    backbone = AlbertBackbone(AlbertConfig.preset(size))  # xxlarge: 0.9 GB, a few seconds
    assert backbone.count_params() == PUBLISHED_COUNTS[size]
    del backbone
    keras.backend.clear_session()


def _distinct(objects):
    return len({id(o) for o in objects})


@pytest.mark.parametrize("layers, groups", [(12, 1), (12, 3), (12, 5), (3, 2), (4, 4)])
def test_layers_share_blocks_by_group(layers, groups):
    config = AlbertConfig(
        vocab_size=10, hidden_size=8, num_attention_heads=2, intermediate_size=8, embedding_size=4,
        num_hidden_layers=layers, num_hidden_groups=groups, inner_group_num=2,
    )  # fmt: skip
    plan = layer_plan(config)
    assert len(plan) == layers
    for i in range(layers):
        for k in range(layers):
            same_group = int(i / layers * groups) == int(k / layers * groups)
            for j in range(2):
                assert (plan[i][j][0] is plan[k][j][0]) == same_group
                assert (plan[i][j][1] is plan[k][j][1]) == same_group
        assert plan[i][0][0] is not plan[i][1][0]  # inner blocks have their own weights
    assert _distinct(a for blocks in plan for a, _ in blocks) == groups * 2


@pytest.mark.parametrize(
    "sharing, attention_objects, ffn_objects",
    [("all", 1, 1), ("none", 6, 6), ("attention", 1, 6), ("ffn", 6, 1)],
)
def test_sharing_modes_build_the_papers_ablation(sharing, attention_objects, ffn_objects):
    config = AlbertConfig.preset(
        "tiny", num_hidden_layers=6, num_hidden_groups=1, inner_group_num=1, sharing=sharing
    )
    backbone = AlbertBackbone(config)
    plan = backbone.transformer_layers
    attention = [blocks[0][0] for blocks in plan]
    ffn = [blocks[0][1] for blocks in plan]
    assert (_distinct(attention), _distinct(ffn)) == (attention_objects, ffn_objects)
    fixed = AlbertBackbone(config.replace(num_hidden_layers=1, sharing="all")).count_params()
    per_attention = attention[0].count_params()
    per_ffn = ffn[0].count_params()
    assert (
        backbone.count_params()
        == fixed + (attention_objects - 1) * per_attention + (ffn_objects - 1) * per_ffn
    )
    outputs = backbone(backbone_inputs(config.vocab_size, [9, 5], 9))
    assert outputs["sequence_output"].shape == (2, 9, config.hidden_size)


def test_unshared_layers_compute_differently_from_shared_ones():
    """With sharing="none" and distinct random weights, layer order matters; shared, it cannot."""
    config = AlbertConfig.preset("tiny", num_hidden_groups=1, inner_group_num=1, hidden_dropout_prob=0.0)
    inputs = backbone_inputs(config.vocab_size, [12, 7], 12)
    unshared = AlbertBackbone(config.replace(sharing="none"))
    randomize_weights(unshared, seed=1)
    first, second = unshared.transformer_layers[0][0], unshared.transformer_layers[1][0]
    before = unshared(inputs)["sequence_output"]
    for a, b in zip(first[0].weights + first[1].weights, second[0].weights + second[1].weights, strict=True):
        a_value, b_value = np.array(a.numpy()), np.array(b.numpy())
        a.assign(b_value)
        b.assign(a_value)
    assert max_abs_diff(before, unshared(inputs)["sequence_output"]) > 1e-3


def test_outputs_at_real_tokens_ignore_padding():
    config = AlbertConfig.preset("tiny")
    backbone = AlbertBackbone(config)
    randomize_weights(backbone, seed=2)
    inputs = backbone_inputs(config.vocab_size, [16, 11, 3, 1], 16, seed=3)
    real = inputs["padding_mask"].astype(bool)
    reference = backbone(inputs)

    # Other ids and segments in the padding: nothing changes at real tokens.
    noisy = {k: v.copy() for k, v in inputs.items()}
    rng = np.random.default_rng(4)
    noisy["token_ids"][~real] = rng.integers(2, config.vocab_size, size=(~real).sum())
    noisy["segment_ids"][~real] = 1
    changed = backbone(noisy)
    seq_a, seq_b = np.asarray(reference["sequence_output"]), np.asarray(changed["sequence_output"])
    assert max_abs_diff(seq_a[real], seq_b[real]) < 1e-5
    assert max_abs_diff(reference["pooled_output"], changed["pooled_output"]) < 1e-5
    assert max_abs_diff(seq_a[~real], seq_b[~real]) > 1e-3  # the test would notice a change

    # Each row alone, unpadded, gives what it gave inside the padded batch.
    for row, length in enumerate([16, 11, 3, 1]):
        alone = backbone({k: v[row : row + 1, :length] for k, v in inputs.items()})
        assert max_abs_diff(alone["sequence_output"][0], seq_a[row, :length]) < 1e-5
        assert max_abs_diff(alone["pooled_output"][0], np.asarray(reference["pooled_output"])[row]) < 1e-5


def test_sequences_longer_than_the_position_table_are_refused():
    config = AlbertConfig.preset("tiny", max_position_embeddings=8)
    backbone = AlbertBackbone(config)
    backbone(backbone_inputs(config.vocab_size, [8], 8))
    with pytest.raises(ValueError, match="Sequence length 9 exceeds max_position_embeddings=8"):
        backbone(backbone_inputs(config.vocab_size, [9], 9))


def test_gelu_new_is_the_tanh_approximation():
    x = np.linspace(-6, 6, 101).astype("float32")
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    assert max_abs_diff(get_activation("gelu_new")(x), expected) < 1e-6
    assert max_abs_diff(get_activation("gelu")(x), expected) > 1e-5  # the exact form is different


def test_dropout_is_active_in_training_only():
    config = AlbertConfig.preset("tiny", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    backbone = AlbertBackbone(config)
    inputs = backbone_inputs(config.vocab_size, [10, 6], 10)
    inference = [backbone(inputs, training=False)["pooled_output"] for _ in range(2)]
    assert max_abs_diff(*inference) == 0.0
    training = [backbone(inputs, training=True)["pooled_output"] for _ in range(2)]
    assert max_abs_diff(*training) > 1e-4


def test_token_type_table_gives_what_a_gather_gives():
    # The segment table is a one-hot matmul (its gradient is no scatter); same rows as a lookup.
    layer = SmallTableEmbedding(2, 16)
    lookup = keras.layers.Embedding(2, 16)
    ids = np.array([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0]], "int32")
    layer.build(ids.shape)
    lookup.build(ids.shape)
    table = np.random.default_rng(0).normal(size=(2, 16)).astype("float32")
    lookup.embeddings.assign(table)
    layer.embeddings.assign(table)
    assert max_abs_diff(layer(ids), lookup(ids)) == 0.0
    assert SmallTableEmbedding.from_config(layer.get_config()).input_dim == 2


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the fused attention is the JAX backend's")
def test_jax_attention_is_the_written_out_attention():
    # Under JAX the model runs jax.nn.dot_product_attention; outside the GPU kernel it must equal the
    # einsum/softmax attention that the TensorFlow serving graph holds, padding included.
    from albert_keras.encoder import SelfAttention, _fused_attention

    layer = SelfAttention(32, 4)
    x = np.random.default_rng(1).normal(size=(3, 9, 32)).astype("float32")
    padding_mask = (np.arange(9)[None, :] < np.array([9, 5, 1])[:, None]).astype("int32")
    layer.build(x.shape)
    q, k, v = (layer._split_heads(dense(x)) for dense in (layer.query, layer.key, layer.value))
    written_out = layer._attention(q, k, v, padding_mask)
    fused = _fused_attention(q, k, v, padding_mask)
    assert max_abs_diff(fused, written_out) < 1e-6
