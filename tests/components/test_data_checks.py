"""The AnomalyGate's check of a reused vocabulary's drift on the new data."""

from __future__ import annotations

import pytest

from components.data_checks.component import vocabulary_drift

pytestmark = pytest.mark.backend_independent


def test_drift_past_either_bound_is_an_anomaly_that_names_it():
    within = {"unk_rate_increase": 0.004, "pieces_per_word_ratio": 1.05}
    assert vocabulary_drift(within, max_unk_rate_increase=0.01, max_pieces_per_word_ratio=1.15) == []
    more_unk = {**within, "unk_rate_increase": 0.02}
    [problem] = vocabulary_drift(more_unk, max_unk_rate_increase=0.01, max_pieces_per_word_ratio=1.15)
    assert "<unk> rate rose by 0.0200" in problem and "bound 0.01" in problem
    split_finer = {**within, "pieces_per_word_ratio": 1.3}
    [problem] = vocabulary_drift(split_finer, max_unk_rate_increase=0.01, max_pieces_per_word_ratio=1.15)
    assert "1.300 times" in problem
    # Fewer <unk>s or fewer pieces per word than when trained is no drift to flag.
    better = {"unk_rate_increase": -0.01, "pieces_per_word_ratio": 0.8}
    assert vocabulary_drift(better, max_unk_rate_increase=0.0, max_pieces_per_word_ratio=1.0) == []
