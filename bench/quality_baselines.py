"""The rows of `bench/quality.py` that need no neural network: `majority` and `classic`.

    majority   single-label and pairs: the most frequent train class for every unit. Multi-label: the
               labels whose train frequency is at least 0.5 for every note, or the single most frequent
               label, whichever has the higher micro-F1 on eval. NER: every word O.
    classic    notes: TF-IDF of word 1-2 grams (sublinear tf, min_df 2) and logistic regression, one
               per label (one-vs-rest) for multi-label; pairs: the TF-IDF of the question and that of
               the passage side by side. C is chosen on eval from a small grid by the task's primary
               metric (multi-label: micro-F1 at per-label thresholds chosen on eval, which the test
               split then uses). NER: a linear-chain CRF (sklearn-crfsuite, L-BFGS, c1 = c2 = 0.1)
               on the usual word features.

Each returns `Predictions`: eval and test answers in the form `quality_metrics.scored` takes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench import quality_metrics as metrics
from bench.quality_data import BIO_TAGS, Sentence, TaskData


@dataclasses.dataclass
class Predictions:
    """A row's answers on the eval and test splits, and what it chose (printed in the JSON)."""

    eval: Any
    test: Any
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ClassicSettings:
    """C values tried on eval; the TF-IDF vocabulary cap; CRF iterations."""

    c_grid: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)
    max_features: int = 200_000
    crf_iterations: int = 150


# -- majority ----------------------------------------------------------------------------------------


def majority(task: TaskData) -> Predictions:
    units = {split: len(task.splits[split]) for split in ("eval", "test")}
    if task.kind == "entities":
        return Predictions(
            *([[0] * len(s.words) for s in task.splits[split]] for split in ("eval", "test")),
            details={"predicts": "O for every word"},
        )
    if task.kind in ("single_label", "pair"):
        counts = np.bincount(metrics.gold_of(task, "train"), minlength=len(task.label_names))
        winner = int(counts.argmax())
        return Predictions(
            np.full(units["eval"], winner),
            np.full(units["test"], winner),
            details={"predicts": task.label_names[winner]},
        )
    frequency = metrics.gold_of(task, "train").mean(axis=0)
    candidates = {
        "labels with train frequency >= 0.5": frequency >= 0.5,
        "the most frequent label": np.arange(len(frequency)) == frequency.argmax(),
    }
    eval_gold = metrics.gold_of(task, "eval")

    def on_eval(chosen: np.ndarray) -> float:
        return metrics.point_scores(task.kind, eval_gold, np.tile(chosen, (units["eval"], 1)), 0)["micro_f1"]

    rule = max(candidates, key=lambda name: on_eval(candidates[name]))
    chosen = candidates[rule].astype(np.int64)
    return Predictions(
        np.tile(chosen, (units["eval"], 1)),
        np.tile(chosen, (units["test"], 1)),
        details={"rule": rule, "predicts": [n for n, on in zip(task.label_names, chosen, strict=True) if on]},
    )


# -- classic -----------------------------------------------------------------------------------------


def _vectorizer(max_features: int, min_df: int = 2):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, min_df=min_df, max_features=max_features, dtype=np.float32
    )


def _features(task: TaskData, settings: ClassicSettings) -> tuple[dict[str, Any], int]:
    """TF-IDF features of every split, fitted on train; and the vocabulary size."""
    from scipy import sparse

    train = task.splits["train"]
    min_df = 2 if len(train) >= 50 else 1
    first = _vectorizer(settings.max_features, min_df)
    first.fit([e.text for e in train])
    second = None
    if task.kind == "pair":
        second = _vectorizer(settings.max_features, min_df)
        second.fit([e.text_b for e in train])

    def transform(examples: Sequence) -> Any:
        matrix = first.transform([e.text for e in examples])
        if second is None:
            return matrix
        return sparse.hstack([matrix, second.transform([e.text_b for e in examples])]).tocsr()

    size = len(first.vocabulary_) + (len(second.vocabulary_) if second is not None else 0)
    return {split: transform(task.splits[split]) for split in ("train", "eval", "test")}, size


def _one_vs_rest(x_train: Any, y_train: np.ndarray, c: float, rows: Sequence[Any]) -> list[np.ndarray]:
    """Probabilities [rows, labels] on each of `rows` from one logistic regression per label; a label
    that is always (or never) present in train gets that constant."""
    from sklearn.linear_model import LogisticRegression

    outputs = [np.zeros((x.shape[0], y_train.shape[1])) for x in rows]
    for label in range(y_train.shape[1]):
        column = y_train[:, label]
        if column.min() == column.max():
            for out in outputs:
                out[:, label] = float(column[0]) if len(column) else 0.0
            continue
        model = LogisticRegression(C=c, solver="liblinear", max_iter=1000).fit(x_train, column)
        for out, x in zip(outputs, rows, strict=True):
            out[:, label] = model.predict_proba(x)[:, 1]
    return outputs


def _softmax_regression(x_train: Any, y_train: np.ndarray, c: float, rows: Sequence[Any]) -> list[np.ndarray]:
    """Class ids on each of `rows` from a multinomial logistic regression (classes absent from train are
    never predicted)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
    return [model.classes_[model.predict_proba(x).argmax(axis=1)] for x in rows]


def classic_text(task: TaskData, settings: ClassicSettings) -> Predictions:
    """TF-IDF + logistic regression, C chosen on eval (module docstring)."""
    x, vocabulary = _features(task, settings)
    y_train = metrics.gold_of(task, "train")
    eval_gold = metrics.gold_of(task, "eval")
    best: tuple[float, float, Predictions] | None = None
    for c in settings.c_grid:
        if task.kind == "multi_label":
            eval_probs, test_probs = _one_vs_rest(x["train"], y_train, c, [x["eval"], x["test"]])
            thresholds, test_answers = metrics.decide_multi_label(eval_probs, eval_gold, test_probs)
            eval_answers = (eval_probs >= thresholds).astype(np.int64)
        else:
            if len(np.unique(y_train)) < 2:
                raise ValueError(f"{task.name}: the train split holds fewer than two classes")
            eval_answers, test_answers = _softmax_regression(x["train"], y_train, c, [x["eval"], x["test"]])
        figure = metrics.point_scores(task.kind, eval_gold, eval_answers, len(task.label_names))
        value = figure[metrics.primary(task.kind)]
        if best is None or value > best[0]:
            details = {"C": c, "tfidf_features": vocabulary, "c_grid": list(settings.c_grid)}
            best = (value, c, Predictions(eval_answers, test_answers, details))
    assert best is not None
    return best[2]


def word_features(words: Sequence[str], i: int) -> dict[str, Any]:
    """CRF features of word i: its lower case, prefixes and suffixes, shape and case flags, and the
    lower case and flags of the words one and two positions away; BOS/EOS at the edges."""
    word = words[i]
    shape = "".join(
        "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch for ch in word
    )
    features: dict[str, Any] = {
        "bias": 1.0,
        "lower": word.lower(),
        "prefix3": word[:3].lower(),
        "suffix2": word[-2:].lower(),
        "suffix3": word[-3:].lower(),
        "suffix4": word[-4:].lower(),
        "shape": shape[:8],
        "isupper": word.isupper(),
        "istitle": word.istitle(),
        "isdigit": word.isdigit(),
        "hasdigit": any(ch.isdigit() for ch in word),
        "hyphen": "-" in word,
        "length": min(len(word), 10),
    }
    for offset in (-2, -1, 1, 2):
        j = i + offset
        if 0 <= j < len(words):
            neighbour = words[j]
            features[f"{offset}:lower"] = neighbour.lower()
            features[f"{offset}:suffix3"] = neighbour[-3:].lower()
            features[f"{offset}:istitle"] = neighbour.istitle()
            features[f"{offset}:isupper"] = neighbour.isupper()
    if i == 0:
        features["BOS"] = True
    if i == len(words) - 1:
        features["EOS"] = True
    return features


def _sentence_features(sentences: Sequence[Sentence]) -> list[list[dict[str, Any]]]:
    return [[word_features(s.words, i) for i in range(len(s.words))] for s in sentences]


def classic_entities(task: TaskData, settings: ClassicSettings) -> Predictions:
    """A CRF on word features (c1 = c2 = 0.1), trained on train, answering eval and test."""
    import sklearn_crfsuite

    crf = sklearn_crfsuite.CRF(
        algorithm="lbfgs",
        c1=0.1,
        c2=0.1,
        max_iterations=settings.crf_iterations,
        all_possible_transitions=True,
    )
    train = task.splits["train"]
    crf.fit(_sentence_features(train), [[BIO_TAGS[t] for t in s.tags] for s in train])
    tag_ids = {tag: i for i, tag in enumerate(BIO_TAGS)}
    answers = [
        [[tag_ids[tag] for tag in tags] for tags in crf.predict(_sentence_features(task.splits[split]))]
        for split in ("eval", "test")
    ]
    details = {"c1": 0.1, "c2": 0.1, "max_iterations": settings.crf_iterations}
    return Predictions(*answers, details=details)


def classic(task: TaskData, settings: ClassicSettings) -> Predictions:
    if task.kind == "entities":
        return classic_entities(task, settings)
    return classic_text(task, settings)
