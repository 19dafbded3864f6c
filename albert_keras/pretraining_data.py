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
and the "random other document" comes from a fixed pool (the documents with the smallest content
hashes), and each document's generator is seeded by (seed, its hash): a document's instances do not
depend on the order documents arrive in, which lets Beam make them on any number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
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


@dataclasses.dataclass(frozen=True)
class Instance:
    """One pretraining instance, unpadded: what the Beam step stores and `padded` expands.

    `tokens` is [CLS] A [SEP] B [SEP] after masking; `a_length` counts [CLS] A [SEP] (segment 0);
    `positions` are the masked positions (ascending) and `labels` the original ids there.
    """

    document_key: int
    index: int  # the instance's place among its document's instances (all dupe passes)
    tokens: np.ndarray
    a_length: int
    positions: np.ndarray
    labels: np.ndarray
    sop_label: int


def document_key(document: Sequence[Sequence[int]]) -> int:
    """A 63-bit key from a document's token ids: the same in every process, runner and input order,
    so it seeds the document's masking wherever the document is processed."""
    digest = hashlib.sha256()
    for sentence in document:
        ids = np.asarray(sentence, np.int64)
        digest.update(len(ids).to_bytes(8, "little"))
        digest.update(ids.tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def random_pool(
    keyed_documents: Iterable[tuple[int, Sequence[Sequence[int]]]], size: int
) -> list[tuple[int, Sequence[Sequence[int]]]]:
    """The `size` documents with the smallest keys, in key order: where single-sentence chunks take
    their "random other document" from. A hash-ordered sample does not depend on the input's order
    or partitioning, so a distributed run and a sequential one draw from the same pool."""
    return heapq.nsmallest(size, ((k, d) for k, d in keyed_documents if len(d)), key=lambda kd: kd[0])


def document_instances(
    document: Sequence[Sequence[int]],
    key: int,
    vocab: Vocabulary,
    config: MaskingConfig,
    seed: int,
    pool: Sequence[tuple[int, Sequence[Sequence[int]]]] = (),
    word_starts: np.ndarray | None = None,
    replacement_ids: np.ndarray | None = None,
) -> Iterator[Instance]:
    """Every instance of one document (`config.dupe_factor` passes, each masked anew).

    The generator is seeded by (seed, key) alone, so the result depends on the document and the pool,
    not on which documents came before it.
    """
    rng = np.random.default_rng([seed, key])
    word_starts = vocab.word_starts() if word_starts is None else word_starts
    replacement_ids = vocab.replacement_ids() if replacement_ids is None else replacement_ids
    others = [d for k, d in pool if k != key]

    def random_document():
        return others[int(rng.integers(0, len(others)))] if others else None

    document = [s for s in document if len(s)]
    index = 0
    for _ in range(config.dupe_factor):
        for a, b, label in sentence_order_pairs(document, config, rng, random_document):
            tokens = np.array([vocab.cls_id, *a, vocab.sep_id, *b, vocab.sep_id], np.int32)
            masked, positions, labels, _ = mask_tokens(
                tokens, vocab, config, rng, word_starts, replacement_ids
            )
            yield Instance(
                document_key=key,
                index=index,
                tokens=masked,
                a_length=len(a) + 2,
                positions=np.array(positions, np.int32),
                labels=np.array(labels, np.int32),
                sop_label=label,
            )
            index += 1


def padded(instance: Instance, vocab: Vocabulary, config: MaskingConfig) -> dict[str, np.ndarray]:
    """An instance as fixed-length arrays: token_ids, segment_ids, padding_mask (max_seq_length),
    mask_positions, mlm_labels, mlm_weights (max_predictions_per_seq) and sop_labels (scalar)."""
    seq, preds, n, count = (
        config.max_seq_length,
        config.max_predictions_per_seq,
        len(instance.tokens),
        len(instance.labels),
    )
    out = {
        "token_ids": np.full(seq, vocab.pad_id, np.int32),
        "segment_ids": np.zeros(seq, np.int32),
        "padding_mask": np.zeros(seq, np.int32),
        "mask_positions": np.zeros(preds, np.int32),
        "mlm_labels": np.zeros(preds, np.int32),
        "mlm_weights": np.zeros(preds, np.float32),
        "sop_labels": np.array(instance.sop_label, np.int32),
    }
    out["token_ids"][:n] = instance.tokens
    out["segment_ids"][instance.a_length : n] = 1
    out["padding_mask"][:n] = 1
    out["mask_positions"][:count] = instance.positions
    out["mlm_labels"][:count] = instance.labels
    out["mlm_weights"][:count] = 1.0
    return out


def create_instances(
    documents: Iterable[Sequence[Sequence[int]]] | Callable[[], Iterable[Sequence[Sequence[int]]]],
    vocab: Vocabulary,
    config: MaskingConfig,
    seed: int,
    random_pool_size: int = 1000,
) -> Iterator[dict[str, np.ndarray]]:
    """Padded instances of every document, in input order; deterministic for a given seed.

    Each document's instances depend only on the document, the seed and the random pool (the
    `random_pool_size` documents with the smallest keys), so the Beam step, which processes documents
    in any order on any number of workers, makes the same instances. `documents` may be a function
    returning a fresh iterable: then the corpus is read twice (the pool, then the instances) instead
    of being held in memory.
    """
    word_starts, replacements = vocab.word_starts(), vocab.replacement_ids()
    if callable(documents):
        pool = random_pool(((document_key(d), d) for d in documents()), random_pool_size)
        source: Iterable[Sequence[Sequence[int]]] = documents()
    else:
        source = [list(d) for d in documents]
        pool = random_pool(((document_key(d), d) for d in source), random_pool_size)
    for document in source:
        key = document_key(document)
        for instance in document_instances(
            document, key, vocab, config, seed, pool, word_starts, replacements
        ):
            yield padded(instance, vocab, config)


def read_documents(paths: Sequence[str], processor) -> Iterator[list[list[int]]]:
    """Documents from text files in google-research's format (one sentence per line, a blank line
    between documents) as lists of sentences tokenized by a SentencePiece processor."""
    for path in paths:
        document: list[list[int]] = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    if document:
                        yield document
                    document = []
                    continue
                document.append(processor.encode(line, out_type=int))
        if document:
            yield document


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
        for instance in create_instances(documents, vocab, config, seed):
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
