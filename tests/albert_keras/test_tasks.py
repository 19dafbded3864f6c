import keras
import numpy as np
import pytest
from keras import ops

from albert_keras import (
    IGNORE_LABEL,
    AlbertBackbone,
    AlbertClassifier,
    AlbertConfig,
    AlbertMultipleChoice,
    AlbertPretrainer,
    AlbertQuestionAnswering,
    AlbertTokenClassifier,
    bio_labels,
)
from albert_keras.smoke import random_pretraining_batch
from tests.albert_keras.util import INPUT_NAMES, backbone_inputs, max_abs_diff, randomize_weights

CONFIG = AlbertConfig.preset("tiny", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu_new(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.fixture
def pretrainer():
    model = AlbertPretrainer(AlbertBackbone(CONFIG))
    randomize_weights(model, seed=5)
    return model


def test_mlm_decoder_is_tied_to_the_word_embeddings(pretrainer):
    assert pretrainer.mlm_head.token_embedding is pretrainer.backbone.token_embedding
    embeddings = pretrainer.backbone.token_embedding.embeddings
    assert sum(v is embeddings for v in pretrainer.weights) == 1
    head_weights = {v.path: tuple(v.shape) for v in pretrainer.mlm_head.weights}
    E, H, V = CONFIG.embedding_size, CONFIG.hidden_size, CONFIG.vocab_size
    own = {"mlm_head/dense/kernel": (H, E), "mlm_head/dense/bias": (E,), "mlm_head/layer_norm/gamma": (E,)}
    for path, shape in own.items():
        assert head_weights[path] == shape
    assert head_weights["mlm_head/bias"] == (V,)
    extra = pretrainer.count_params() - pretrainer.backbone.count_params()
    assert extra == (H * E + E) + 2 * E + V + (H * 2 + 2)  # MLM dense + LayerNorm + bias, SOP


def test_mlm_logits_are_computed_at_the_masked_positions_only(pretrainer):
    x, _ = random_pretraining_batch(CONFIG, batch=3, seq=20, predictions=4, seed=1)
    logits = np.asarray(pretrainer(x)["mlm_logits"])
    assert logits.shape == (3, 4, CONFIG.vocab_size)
    sequence = np.asarray(pretrainer.backbone({k: x[k] for k in INPUT_NAMES})["sequence_output"])
    w = {v.path: np.asarray(v.numpy()) for v in pretrainer.weights}
    gathered = np.take_along_axis(sequence, x["mask_positions"][:, :, None], axis=1)
    h = _gelu_new(gathered @ w["mlm_head/dense/kernel"] + w["mlm_head/dense/bias"])
    h = _layer_norm(h, w["mlm_head/layer_norm/gamma"], w["mlm_head/layer_norm/beta"], CONFIG.layer_norm_eps)
    expected = h @ w["token_embedding/embeddings"].T + w["mlm_head/bias"]
    assert max_abs_diff(logits, expected) < 1e-4


def test_pretraining_loss_is_googles_weighted_mlm_plus_sop(pretrainer):
    x, y = random_pretraining_batch(CONFIG, batch=4, seq=16, predictions=5, seed=2)
    y["mlm_weights"][1, 3:] = 0.0  # fewer real predictions in row 1
    y["mlm_labels"][1, 3:] = 0
    outputs = pretrainer(x)
    loss = float(pretrainer.compute_loss(x, y, outputs))
    mlm_ce = -np.take_along_axis(
        _log_softmax(np.asarray(outputs["mlm_logits"])), y["mlm_labels"][..., None], -1
    )[..., 0]
    sop_ce = -np.take_along_axis(
        _log_softmax(np.asarray(outputs["sop_logits"])), y["sop_labels"][:, None], -1
    )
    expected = (mlm_ce * y["mlm_weights"]).sum() / (y["mlm_weights"].sum() + 1e-5) + sop_ce.mean()
    assert abs(loss - expected) < 1e-4
    # A prediction of weight 0 does not count, whatever its label.
    y["mlm_labels"][1, 3:] = 7
    assert abs(float(pretrainer.compute_loss(x, y, outputs)) - loss) < 1e-6


def test_pretrainer_fits_a_batch():
    model = AlbertPretrainer(AlbertBackbone(CONFIG))
    x, y = random_pretraining_batch(CONFIG, batch=8, seq=16, predictions=3, seed=3)
    model.compile(optimizer=keras.optimizers.Adam(5e-3))
    losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(40)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.parametrize(
    "problem_type, num_labels, targets",
    [
        ("single_label", 3, np.array([0, 2, 1, 2])),
        ("multi_label", 3, np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], "float32")),
        ("regression", 1, np.array([[0.5], [-1.0], [2.0], [0.0]], "float32")),
    ],
)
def test_classifier_problem_types_train(problem_type, num_labels, targets):
    model = AlbertClassifier(
        AlbertBackbone(CONFIG), num_labels=num_labels, problem_type=problem_type, dropout=0.0
    )
    x = backbone_inputs(CONFIG.vocab_size, [12, 9, 5, 12], 12, seed=4)
    logits = model(x)
    assert logits.shape == (4, num_labels) and logits.dtype == "float32"
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    losses = model.fit(x, targets, epochs=20, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]


def test_classifier_rejects_bad_arguments():
    backbone = AlbertBackbone(CONFIG)
    with pytest.raises(ValueError, match="problem_type='ordinal'"):
        AlbertClassifier(backbone, num_labels=3, problem_type="ordinal")
    with pytest.raises(ValueError, match="num_labels=1"):
        AlbertClassifier(backbone, num_labels=1)


def test_token_classifier_tags_every_token_and_skips_ignored_labels():
    labels = bio_labels(["Disease", "Chemical"])
    assert labels == ["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]
    model = AlbertTokenClassifier(AlbertBackbone(CONFIG), num_labels=len(labels))
    randomize_weights(model, seed=6, scale=0.1)
    x = backbone_inputs(CONFIG.vocab_size, [10, 6], 10)
    logits = model(x)
    assert logits.shape == (2, 10, len(labels))
    tags = np.where(x["padding_mask"] == 1, 1, IGNORE_LABEL)
    model.compile()
    loss = model.default_loss()
    base = float(loss(tags, logits))
    row = np.asarray(logits)[0, :10]
    expected = -_log_softmax(row)[:, 1].sum() / 16 + -_log_softmax(np.asarray(logits)[1, :6])[:, 1].sum() / 16
    assert abs(base - expected) < 1e-4  # mean over the 16 real tokens; ignored positions add nothing
    changed = np.asarray(logits).copy()
    changed[1, 6:] = 100.0  # wildly different logits at ignored positions
    assert abs(float(loss(tags, changed)) - base) < 1e-6


def test_question_answering_never_points_into_padding():
    model = AlbertQuestionAnswering(AlbertBackbone(CONFIG))
    randomize_weights(model, seed=7)
    x = backbone_inputs(CONFIG.vocab_size, [14, 5], 14)
    outputs = model(x)
    for name in ("start_logits", "end_logits"):
        logits = np.asarray(outputs[name])
        assert logits.shape == (2, 14)
        assert (logits[1, 5:] <= -1e8).all() and (logits[1, :5] > -1e8).all()
        assert logits[1].argmax() < 5
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    y = {"start_logits": np.array([3, 1]), "end_logits": np.array([6, 2])}
    losses = model.fit(x, y, epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]


def test_multiple_choice_scores_each_choice_on_its_own():
    model = AlbertMultipleChoice(AlbertBackbone(CONFIG), dropout=0.0)
    randomize_weights(model, seed=8)
    batch, choices, seq = 2, 3, 9
    flat = backbone_inputs(CONFIG.vocab_size, [9, 7, 4, 9, 8, 2], seq, seed=9)
    x = {k: v.reshape(batch, choices, seq) for k, v in flat.items()}
    logits = np.asarray(model(x))
    assert logits.shape == (batch, choices)
    # Permuting the choices permutes the logits.
    order = [2, 0, 1]
    permuted = np.asarray(model({k: v[:, order] for k, v in x.items()}))
    assert max_abs_diff(permuted, logits[:, order]) < 1e-5
    # The number of choices may change between batches.
    assert model({k: v[:, :2] for k, v in x.items()}).shape == (batch, 2)
    # A choice's score is the backbone's pooled output through the scoring layer.
    pooled = np.asarray(model.backbone(flat)["pooled_output"])
    kernel, bias = (np.asarray(w.numpy()) for w in model.output_dense.weights)
    assert max_abs_diff(logits, (pooled @ kernel + bias).reshape(batch, choices)) < 1e-5


def test_heads_return_float32_logits_under_mixed_precision():
    backbone = AlbertBackbone(CONFIG, dtype="mixed_bfloat16")
    model = AlbertPretrainer(backbone)
    x, _ = random_pretraining_batch(CONFIG, batch=2, seq=8, predictions=2)
    outputs = model(x)
    assert outputs["mlm_logits"].dtype == "float32" and outputs["sop_logits"].dtype == "float32"
    assert ops.convert_to_numpy(outputs["mlm_logits"]).shape == (2, 2, CONFIG.vocab_size)
