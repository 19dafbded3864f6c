"""Pretraining instances: sentence-order pairs and n-gram masking, after google-research/albert.

Input documents are lists of sentences, each sentence a list of SentencePiece ids. Output
instances are dicts of numpy arrays in the format `AlbertPretrainer.fit` takes.

What follows google-research/albert's `create_pretraining_data.py`, step for step:
- Chunks of consecutive sentences fill a target length (`max_seq_length - 3`, or with probability
  `short_seq_prob` a random length in [2, that]); segment A is the first 1..k-1 sentences of the
  chunk, B the rest; with probability 0.5 A and B are swapped (sentence-order label 1). A chunk of
  one sentence takes B from a random other document and is labelled 1, as google's code does.
- The pair is truncated to fit, one token at a time from the longer segment, front or back at random.
- Masking: candidates are whole words (a piece starting with the SentencePiece word marker "▁",
  "<", or a punctuation character begins a word); `[CLS]`/`[SEP]` are never candidates. The budget is
  min(max_predictions_per_seq, max(1, round(len * masked_lm_prob))). Candidate starts are shuffled;
  at each, an n-gram length n <= 3 is drawn with p proportional to 1/n (6/11, 3/11, 2/11), shortened
  while it would exceed the budget, and skipped if it overlaps an earlier span. Each chosen piece
  becomes [MASK] (80%), stays (10%) or becomes a random piece (10%).

Where this differs, deliberately: the n-gram length is drawn from the seeded generator (google's
code draws it from numpy's global one, so its output is not reproducible from the seed); random
replacements are drawn from non-control pieces only (google's may insert [CLS], [SEP] or <pad>);
and in the streaming form the "random other document" comes from a buffer of recent documents.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

WORD_START = "\u2581"  # SentencePiece's "▁"
_PUNCTUATION = set(string.punctuation) | {"€", "£"}


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """What instance creation needs to know about the SentencePiece vocabulary."""

    pieces: tuple[str, ...]
    cls_id: int
    sep_id: int
    mask_id: int
    pad_id: int = 0
    #: Ids never produced as random replacements (control and user-defined symbols).
    control_ids: tuple[int, ...] = ()

    @classmethod
    def from_pieces(cls, pieces: Sequence[str], control: Sequence[str] = ("<pad>", "<unk>")) -> Vocabulary:
        index = {piece: i for i, piece in enumerate(pieces)}
        for required in ("[CLS]", "[SEP]", "[MASK]", "<pad>"):
            if required not in index:
                raise ValueError(f"vocabulary has no {required!r} piece")
        specials = {"[CLS]", "[SEP]", "[MASK]", *control}
        return cls(
            pieces=tuple(pieces),
            cls_id=index["[CLS]"],
            sep_id=index["[SEP]"],
            mask_id=index["[MASK]"],
            pad_id=index["<pad>"],
            control_ids=tuple(sorted(index[p] for p in specials if p in index)),
        )

    def word_starts(self) -> np.ndarray:
        """Boolean per id: does this piece begin a word (google's `_is_start_piece_sp`)."""
        return np.array(
            [p.startswith(WORD_START) or p.startswith("<") or p in _PUNCTUATION for p in self.pieces], bool
        )

    def replacement_ids(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.pieces)), np.array(self.control_ids, dtype=int))


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    max_seq_length: int = 512
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    max_ngram: int = 3
    #: Times each document is turned into instances, each time with other masks (google: 10).
    dupe_factor: int = 1

    def __post_init__(self):
        if self.max_seq_length < 5:
            raise ValueError(f"max_seq_length must be >= 5, received {self.max_seq_length}")
        if not 0 <= self.masked_lm_prob < 1 or not 0 <= self.short_seq_prob <= 1:
            raise ValueError(
                f"probabilities out of range: masked_lm_prob={self.masked_lm_prob}, "
                f"short_seq_prob={self.short_seq_prob}"
            )


def ngram_probabilities(max_ngram: int) -> np.ndarray:
    """p(n) proportional to 1/n for n = 1..max_ngram: (6/11, 3/11, 2/11) for 3."""
    p = 1.0 / np.arange(1, max_ngram + 1)
    return p / p.sum()


def mask_tokens(
    token_ids: np.ndarray,
    vocab: Vocabulary,
    config: MaskingConfig,
    rng: np.random.Generator,
    word_starts: np.ndarray | None = None,
    replacement_ids: np.ndarray | None = None,
    drawn_ngrams: list[int] | None = None,
) -> tuple[np.ndarray, list[int], list[int], list[int]]:
    """N-gram whole-word masking of one instance.

    Returns (masked ids, sorted positions, original ids at those positions, span lengths in words).
    `drawn_ngrams`, if given, receives every n drawn, before the budget shortens it (statistics).
    """
    word_starts = vocab.word_starts() if word_starts is None else word_starts
    replacement_ids = vocab.replacement_ids() if replacement_ids is None else replacement_ids
    words: list[list[int]] = []
    for i, token in enumerate(token_ids):
        if token in (vocab.cls_id, vocab.sep_id):
            continue
        if words and not word_starts[token]:
            words[-1].append(i)
        else:
            words.append([i])
    output = np.array(token_ids, copy=True)
    budget = min(config.max_predictions_per_seq, max(1, round(len(token_ids) * config.masked_lm_prob)))
    if config.masked_lm_prob == 0:
        return output, [], [], []
    pvals = ngram_probabilities(config.max_ngram)
    ngrams = np.arange(1, config.max_ngram + 1)

    starts = rng.permutation(len(words))
    covered: set[int] = set()
    chosen: list[int] = []
    spans: list[int] = []
    for start in starts:
        if len(chosen) >= budget:
            break
        n = int(rng.choice(ngrams, p=pvals))  # near the end, fewer words than n remain, as in google's
        if drawn_ngrams is not None:
            drawn_ngrams.append(n)
        span = [i for word in words[start : start + n] for i in word]
        while len(chosen) + len(span) > budget and n > 1:
            n -= 1
            span = [i for word in words[start : start + n] for i in word]
        if len(chosen) + len(span) > budget or any(i in covered for i in span):
            continue
        for i in span:
            covered.add(i)
            roll = rng.random()
            if roll < 0.8:
                output[i] = vocab.mask_id
            elif rng.random() >= 0.5:  # 10%: a random piece; the other 10% keep the original
                output[i] = int(rng.choice(replacement_ids))
            chosen.append(i)
        spans.append(len(words[start : start + n]))
    positions = sorted(chosen)
    return output, positions, [int(token_ids[i]) for i in positions], spans


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def sentence_order_pairs(
    document: Sequence[Sequence[int]],
    config: MaskingConfig,
    rng: np.random.Generator,
    random_document: Callable[[], Sequence[Sequence[int]] | None] | None = None,
) -> Iterator[tuple[list[int], list[int], int]]:
    """(segment A, segment B, label) from one document; label 1 when the order is not the text's.

    `random_document()` returns another document, used only for single-sentence chunks.
    """
    max_tokens = config.max_seq_length - 3
    target = max_tokens
    if rng.random() < config.short_seq_prob:
        target = int(rng.integers(2, max_tokens + 1))
    chunk: list[Sequence[int]] = []
    length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            if chunk:
                a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
                a = [t for s in chunk[:a_end] for t in s]
                b: list[int] = []
                if len(chunk) == 1:
                    label = 1
                    other = random_document() if random_document else None
                    if other:
                        start = int(rng.integers(0, len(other)))
                        for sentence in other[start:]:
                            b.extend(sentence)
                            if len(b) >= target - len(a):
                                break
                else:
                    b = [t for s in chunk[a_end:] for t in s]
                    label = int(rng.random() < 0.5)
                    if label:
                        a, b = b, a
                _truncate_pair(a, b, max_tokens, rng)
                if a and b:
                    yield a, b, label
            chunk = []
            length = 0
        i += 1


def create_instances(
    documents: Iterable[Sequence[Sequence[int]]],
    vocab: Vocabulary,
    config: MaskingConfig,
    seed: int,
    random_pool_size: int = 1000,
) -> Iterator[dict[str, np.ndarray]]:
    """Streams instances from documents, deterministic for a given seed and document order.

    Each instance: token_ids, segment_ids, padding_mask (max_seq_length), mask_positions,
    mlm_labels, mlm_weights (max_predictions_per_seq) and sop_labels (scalar).
    """
    rng = np.random.default_rng(seed)
    word_starts = vocab.word_starts()
    replacements = vocab.replacement_ids()
    pool: list[Sequence[Sequence[int]]] = []

    def random_document():
        return pool[int(rng.integers(0, len(pool)))] if pool else None

    for document in documents:
        document = [s for s in document if len(s)]
        for _ in range(config.dupe_factor):
            for a, b, label in sentence_order_pairs(document, config, rng, random_document):
                yield _instance(a, b, label, vocab, config, rng, word_starts, replacements)
        if document:
            if len(pool) < random_pool_size:
                pool.append(document)
            else:
                pool[int(rng.integers(0, random_pool_size))] = document


def _instance(a, b, label, vocab, config, rng, word_starts, replacements) -> dict[str, np.ndarray]:
    tokens = np.array([vocab.cls_id, *a, vocab.sep_id, *b, vocab.sep_id], np.int32)
    masked, positions, labels, _ = mask_tokens(tokens, vocab, config, rng, word_starts, replacements)
    seq, preds = config.max_seq_length, config.max_predictions_per_seq
    out = {
        "token_ids": np.full(seq, vocab.pad_id, np.int32),
        "segment_ids": np.zeros(seq, np.int32),
        "padding_mask": np.zeros(seq, np.int32),
        "mask_positions": np.zeros(preds, np.int32),
        "mlm_labels": np.zeros(preds, np.int32),
        "mlm_weights": np.zeros(preds, np.float32),
        "sop_labels": np.array(label, np.int32),
    }
    out["token_ids"][: len(masked)] = masked
    out["segment_ids"][len(a) + 2 : len(tokens)] = 1
    out["padding_mask"][: len(tokens)] = 1
    out["mask_positions"][: len(positions)] = positions
    out["mlm_labels"][: len(labels)] = labels
    out["mlm_weights"][: len(labels)] = 1.0
    return out


def split_features_and_targets(instance: dict) -> tuple[dict, dict]:
    """An instance (or a batch of them) as (x, y) for `AlbertPretrainer.fit`."""
    x = {k: instance[k] for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}
    y = {k: instance[k] for k in ("mlm_labels", "mlm_weights", "sop_labels")}
    return x, y


def tf_dataset(
    documents: Iterable[Sequence[Sequence[int]]] | Callable[[], Iterable[Sequence[Sequence[int]]]],
    vocab: Vocabulary,
    config: MaskingConfig,
    seed: int,
):
    """A `tf.data.Dataset` of (x, y) pretraining examples, streamed from documents.

    `documents` is an iterable, or a function returning one, re-read on every pass. TensorFlow is
    imported here, not at module import, so the library stays backend-free.
    """
    import tensorflow as tf

    def generate():
        source = documents() if callable(documents) else documents
        for instance in create_instances(source, vocab, config, seed):
            yield split_features_and_targets(instance)

    seq, preds = config.max_seq_length, config.max_predictions_per_seq
    spec = (
        {
            "token_ids": tf.TensorSpec((seq,), tf.int32),
            "segment_ids": tf.TensorSpec((seq,), tf.int32),
            "padding_mask": tf.TensorSpec((seq,), tf.int32),
            "mask_positions": tf.TensorSpec((preds,), tf.int32),
        },
        {
            "mlm_labels": tf.TensorSpec((preds,), tf.int32),
            "mlm_weights": tf.TensorSpec((preds,), tf.float32),
            "sop_labels": tf.TensorSpec((), tf.int32),
        },
    )
    return tf.data.Dataset.from_generator(generate, output_signature=spec)
