import numpy as np
import pytest

from components.scores import bootstrap, multi_label_scores, single_label_scores


def test_single_label_scores_match_a_hand_count():
    gold = np.array([0, 0, 1, 1, 2, -1])  # the last note has no label: left out
    predicted = np.array([0, 1, 1, 1, 0, 2])
    scores = single_label_scores(gold, predicted, num_classes=4)
    assert scores["accuracy"] == pytest.approx(3 / 5)
    # class 0: P 1/2 R 1/2; class 1: P 2/3 R 1; class 2: P 0 R 0; class 3 never seen: not averaged.
    f1 = [0.5, 0.8, 0.0]
    assert scores["per_class"]["f1"][:3] == pytest.approx(f1)
    assert scores["macro_f1"] == pytest.approx(np.mean(f1))


def test_multi_label_scores_match_a_hand_count():
    gold = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0]])
    scores = multi_label_scores(gold, predicted)
    # 3 true positives, 1 false positive, 1 false negative.
    assert scores["micro_precision"] == pytest.approx(3 / 4) and scores["micro_recall"] == pytest.approx(
        3 / 4
    )
    assert scores["micro_f1"] == pytest.approx(3 / 4)
    assert scores["per_label"]["f1"] == pytest.approx([1.0, 1.0, 0.0])
    assert scores["multi_label_macro_f1"] == pytest.approx(2 / 3)
    assert scores["subset_accuracy"] == pytest.approx(1 / 3)


def test_bootstrap_intervals_hold_the_figure_and_narrow_with_more_units():
    rng = np.random.default_rng(0)

    def interval(units):
        right = rng.random(units) < 0.7
        low, high = bootstrap(units, lambda rows: float(right[rows].mean()), samples=500)
        assert low <= right.mean() <= high
        return high - low

    assert interval(2000) < interval(100) / 3
    assert all(np.isnan(bootstrap(0, lambda rows: 0.0)))
    same = bootstrap(50, lambda rows: float(rows.mean()), seed=3)
    assert same == bootstrap(50, lambda rows: float(rows.mean()), seed=3)
