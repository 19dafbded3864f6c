"""Per-label thresholds chosen for F1, and the decision scores that move each threshold to 0.5."""

from __future__ import annotations

import time

import numpy as np
import pytest

from components.thresholds import choose_thresholds, decision_scores


def _f1(probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each label's F1 when predicting probability >= threshold: `thresholds` `[..., labels]`."""
    predicted = probabilities[None] >= np.asarray(thresholds).reshape(-1, 1, labels.shape[1])
    positive = labels[None] > 0
    true_positives = (predicted & positive).sum(axis=1)
    denominator = predicted.sum(axis=1) + positive.sum(axis=1)
    return np.divide(2 * true_positives, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def test_a_separable_label_gets_a_threshold_that_separates():
    probabilities = np.array([[0.1, 0.6], [0.2, 0.7], [0.3, 0.8], [0.35, 0.9]])
    labels = np.array([[0, 0], [0, 0], [1, 1], [1, 1]])
    thresholds = choose_thresholds(probabilities, labels)
    # Label 0: 0.25, between the negatives' 0.2 and the positives' 0.3. Label 1: 0.75; 0.5 would
    # also call both negatives positive.
    np.testing.assert_allclose(thresholds, [0.25, 0.75])
    assert _f1(probabilities, labels, thresholds).tolist() == [[1.0, 1.0]]


def test_the_chosen_threshold_is_as_good_as_any_in_a_brute_force_scan():
    rng = np.random.default_rng(3)
    rows, labels = 300, 6
    gold = (rng.random((rows, labels)) < rng.uniform(0.03, 0.6, labels)).astype(np.int64)
    noise = rng.uniform(0.2, 1.0, labels)  # from nearly separable to nearly random
    probabilities = 0.02 + 0.96 * np.clip(0.5 * gold + noise * rng.random((rows, labels)), 0, 1) / 1.5
    probabilities = np.round(probabilities, 2)  # ties between rows
    chosen = choose_thresholds(probabilities, gold)
    # Every cut between the lowest and the highest probability (as the candidates are), and a fine grid.
    scan = np.unique(np.concatenate([np.linspace(0.01, 0.99, 981), probabilities.ravel()]))
    scan = np.repeat(scan[:, None], labels, axis=1)
    scan = np.where((scan > probabilities.min(axis=0)) & (scan <= probabilities.max(axis=0)), scan, 0.5)
    best = _f1(probabilities, gold, scan).max(axis=0)
    np.testing.assert_allclose(_f1(probabilities, gold, chosen)[0], best)
    assert np.all((chosen >= 0.01) & (chosen <= 0.99))


def test_ties_go_to_the_candidate_closest_to_the_default_then_to_the_larger():
    # One positive above, one below two negatives: cutting above the first row and cutting above the
    # last negative both give F1 2/3 (1 right of 1 predicted, 2 gold; 2 right of 4 predicted).
    probabilities = np.array([[0.9], [0.7], [0.6], [0.35], [0.1]])
    labels = np.array([[1], [0], [0], [1], [0]])
    assert choose_thresholds(probabilities, labels).tolist() == [pytest.approx(0.225)]  # 0.275 from 0.5
    assert choose_thresholds(probabilities, labels, default=0.52).tolist() == [pytest.approx(0.8)]
    # The same, with both cuts 0.25 from the default: the larger.
    probabilities = np.array([[0.8], [0.7], [0.6], [0.3], [0.2]])
    assert choose_thresholds(probabilities, labels).tolist() == [pytest.approx(0.75)]
    # The default, when it is as good as the best midpoint.
    assert choose_thresholds(np.array([[0.1], [0.9]]), np.array([[0], [1]]), default=0.4).tolist() == [0.4]


def test_labels_with_too_few_positives_keep_the_default_and_thresholds_are_clipped():
    probabilities = np.array([[0.001, 0.1, 0.995], [0.002, 0.9, 0.999], [0.0005, 0.3, 0.997]])
    labels = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 1]])
    thresholds = choose_thresholds(probabilities, labels, default=0.4, min_positives=2)
    # Label 0: best cut 0.00075, clipped to 0.01. Label 1: one positive, the default. Label 2: 0.996,
    # clipped to 0.99.
    np.testing.assert_allclose(thresholds, [0.01, 0.4, 0.99])
    assert choose_thresholds(np.zeros((4, 1)), np.zeros((4, 1))).tolist() == [0.5]  # no positive
    with pytest.raises(ValueError, match=r"same shape \[rows, num_labels\]: got \(3, 3\) and \(3,\)"):
        choose_thresholds(probabilities, labels[:, 0])


def test_choosing_for_ten_thousand_notes_and_fifty_labels_takes_well_under_a_second():
    rng = np.random.default_rng(0)
    labels = (rng.random((10_000, 50)) < 0.1).astype(np.int64)
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random(labels.shape), 0, 1)
    start = time.perf_counter()
    choose_thresholds(probabilities, labels)
    assert time.perf_counter() - start < 0.5


def test_decision_scores_send_each_threshold_to_one_half_monotonically():
    thresholds = np.array([0.01, 0.2, 0.5, 0.9, 0.99, 1e-9, 1 - 1e-9])
    np.testing.assert_allclose(decision_scores(thresholds[None], thresholds), 0.5)
    grid = np.linspace(0, 1, 2001)[:, None].repeat(len(thresholds), axis=1)
    scores = decision_scores(grid, thresholds)
    assert np.all(np.diff(scores, axis=0) >= 0)
    assert scores.min() == 0.0 and scores.max() == 1.0 and np.isfinite(scores).all()
    # Each side is linear: a quarter of the way up to the threshold is 0.125, half of it 0.25, and
    # halfway from the threshold to 1 is 0.75.
    np.testing.assert_allclose(decision_scores([[0.05, 0.45, 0.6]], [0.2, 0.9, 0.2]), [[0.125, 0.25, 0.75]])
    # Predicting at 0.5 on decision scores is predicting at each label's threshold.
    rng = np.random.default_rng(1)
    probabilities = rng.random((200, 3))
    chosen = np.array([0.15, 0.5, 0.8])
    np.testing.assert_array_equal(decision_scores(probabilities, chosen) >= 0.5, probabilities >= chosen)


def test_thresholds_stored_as_float32_move_no_decision_between_neighbouring_probabilities():
    from components.thresholds import BELOW_HALF, float32_thresholds

    low = np.float32(0.3)
    high = np.nextafter(low, np.float32(1.0))  # the next float32: no float32 lies between them
    probabilities = np.array([[high], [low]], np.float32)
    chosen = choose_thresholds(probabilities, np.array([[1], [0]]))
    assert low < chosen[0] < high  # a midpoint, which float32 cannot hold
    stored = float32_thresholds(chosen)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(probabilities >= stored, probabilities >= chosen)
    scores = decision_scores(probabilities, stored)
    assert scores[0, 0] >= 0.5 and scores[1, 0] <= BELOW_HALF < 0.5
