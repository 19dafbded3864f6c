"""Per-label decision thresholds for multi-label classification, and the scores that fold them in.

A multi-label model's sigmoids are rarely calibrated alike: a rare label may be best predicted from a
probability of 0.2, a common one from 0.7. `choose_thresholds` picks, on the eval split, each label's
threshold that maximizes its F1. `decision_scores` then maps each label's probabilities through a
piecewise-linear, monotone map that sends that label's threshold to 0.5:

    p <  t:  0.5 * p / t
    p >= t:  0.5 + 0.5 * (p - t) / (1 - t)

The exported model computes the same map in its graph, after its sigmoids, and its Evaluator
signature outputs these decision scores: the Evaluator's single cut at 0.5
(`eval_metrics.MultiLabelF1`) is then each label's own threshold, and the scores keep the order of
the probabilities within each label. Chosen thresholds are clipped to [0.01, 0.99], so that neither
half of the map divides by (almost) nothing and a threshold learned from a few notes stays usable.
"""

from __future__ import annotations

import numpy as np

#: The chosen thresholds are clipped to [MIN_THRESHOLD, MAX_THRESHOLD].
MIN_THRESHOLD, MAX_THRESHOLD = 0.01, 0.99


def choose_thresholds(
    probabilities: np.ndarray, labels: np.ndarray, default: float = 0.5, min_positives: int = 1
) -> np.ndarray:
    """For each label, the threshold (predict where probability >= threshold) that maximizes its F1
    on these rows: `[num_labels]` float64, from probabilities and 0/1 labels `[rows, num_labels]`.

    Candidates are the midpoints between consecutive distinct probabilities of the label, and
    `default`. Ties go to the candidate closest to `default`, then to the larger. A label with fewer
    than `min_positives` positive rows keeps `default`. Results are clipped to [0.01, 0.99].
    Vectorized over labels: one sort and cumulative sums, O(rows log rows) per label.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape != labels.shape:
        raise ValueError(
            "choose_thresholds needs probabilities and labels of the same shape [rows, num_labels]: got "
            f"{probabilities.shape} and {labels.shape}"
        )
    if not 0.0 < default < 1.0:
        raise ValueError(f"default must lie in (0, 1): got {default}")
    positive = labels > 0
    gold = positive.sum(axis=0)  # (labels,)

    # Midpoint candidates: rows sorted by decreasing probability; cutting after row k predicts the top
    # k + 1, which a threshold strictly between rows k and k + 1 does when their probabilities differ.
    order = np.argsort(-probabilities, axis=0, kind="stable")  # (rows, labels)
    ranked = np.take_along_axis(probabilities, order, axis=0)
    true_positives = np.cumsum(np.take_along_axis(positive, order, axis=0), axis=0)[:-1]  # (rows - 1, labels)
    predicted = np.arange(1, len(ranked))[:, None]
    midpoints = (ranked[:-1] + ranked[1:]) / 2
    midpoints = np.where(midpoints > ranked[1:], midpoints, ranked[:-1])  # neighbouring floats round down
    distinct = ranked[:-1] > ranked[1:]

    # The default candidate, as one more row.
    at_default = probabilities >= default
    candidates = np.vstack([midpoints, np.full((1, gold.size), default)])
    hits = np.vstack([true_positives, (at_default & positive).sum(axis=0)])
    predictions = np.vstack([np.broadcast_to(predicted, midpoints.shape), at_default.sum(axis=0)])
    valid = np.vstack([distinct, np.ones((1, gold.size), dtype=bool)])

    denominator = gold + predictions
    f1 = np.divide(2.0 * hits, denominator, out=np.zeros(candidates.shape), where=denominator > 0)
    f1 = np.where(valid, f1, -1.0)
    best = f1 == f1.max(axis=0)
    # Among the best: smallest distance to default, then the largest threshold.
    distance = np.where(best, np.abs(candidates - default), np.inf)
    closest = best & (distance == distance.min(axis=0))
    chosen = np.where(closest, candidates, -np.inf).max(axis=0)

    chosen = np.where(gold >= min_positives, chosen, default)
    return np.clip(chosen, MIN_THRESHOLD, MAX_THRESHOLD)


def float32_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """Thresholds as the float32 the model stores, without moving a decision: each is the smallest
    float32 at or above the chosen value, so that for float32 probabilities p (what the model
    computes) `p >= stored` exactly when `p >= chosen`. A plain cast may round a midpoint between two
    neighbouring float32 probabilities down onto the lower one, and predict it."""
    chosen = np.asarray(thresholds, dtype=np.float64)
    stored = chosen.astype(np.float32)
    low = stored.astype(np.float64) < chosen
    return np.where(low, np.nextafter(stored, np.float32(np.inf)), stored).astype(np.float32)


#: The largest float32 below 0.5: the highest decision score of a probability under its threshold.
BELOW_HALF = float(np.nextafter(np.float32(0.5), np.float32(0.0)))


def decision_scores(probabilities: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Probabilities `[..., num_labels]` mapped so that each label's threshold becomes 0.5: linear from
    [0, t] onto [0, 0.5] and from [t, 1] onto [0.5, 1], so monotone, and in [0, 1]."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny  # only a threshold of exactly 0 or 1 needs it
    below = 0.5 * probabilities / np.maximum(thresholds, tiny)
    above = 0.5 + 0.5 * (probabilities - thresholds) / np.maximum(1.0 - thresholds, tiny)
    # A probability just under its threshold must score under 0.5 even where the division rounds up.
    return np.clip(np.where(probabilities < thresholds, np.minimum(below, BELOW_HALF), above), 0.0, 1.0)
