"""Training ALBERT's SentencePiece model: a unigram model with ALBERT's special pieces.

Conventions, after google-research/albert's vocabulary: `<pad>`=0, `<unk>`=1, then `[CLS]`, `[SEP]`,
`[MASK]` as control symbols (ids 2, 3, 4; never produced from text), no BOS/EOS. Lower-casing is part of
the model (normalization rule `nmt_nfkc_cf`), so the Python library and tensorflow-text tokenize alike.
The typed PHI tokens are user-defined symbols: SentencePiece matches them in the raw text before it
normalizes, so "[DATE]" stays one piece (and keeps its upper case), while "[date]" is ordinary text.

Large corpora are streamed through a seeded reservoir sample of `max_sentences` sentences. The sampler
is our own so that the sample depends on `seed` alone: SentencePiece's (`input_sentence_size`) gave the
same sample whatever `set_random_generator_seed` was set to. For the same sentences, seed, thread count
and SentencePiece version the model is byte-identical (tested): the unigram training has no other
randomness, and the model is written through `model_writer`, so it records no output path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import sentencepiece as spm

from albert_keras.pretraining_data import Vocabulary
from components.clinical_text.phi_tokens import PHI_TOKENS

MODEL_FILE = "spm.model"
VOCAB_FILE = "spm.vocab"
STATS_FILE = "stats.json"

#: What to do when the corpus cannot support the vocabulary size asked for.
VOCAB_SIZE_FITS = ("error", "lower")

PAD, UNK = "<pad>", "<unk>"
CONTROL_SYMBOLS: tuple[str, ...] = ("[CLS]", "[SEP]", "[MASK]")

T = TypeVar("T")


class VocabSizeTooLarge(ValueError):
    """The corpus cannot support the vocabulary size asked for; `largest` is the size that works."""

    def __init__(self, requested: int, largest: int, sentences: int) -> None:
        super().__init__(
            f"vocab_size {requested} is more than this corpus supports: the largest that works is "
            f"{largest} ({sentences} training sentences). Set vocab_size to at most {largest}, or "
            f"vocab_size_fit='lower' to train that size instead"
        )
        self.requested = requested
        self.largest = largest


@dataclasses.dataclass(frozen=True)
class TokenizerArtifacts:
    """Where a trained tokenizer was written, and its statistics (the content of stats.json)."""

    model_path: Path
    vocab_path: Path
    stats_path: Path
    stats: dict


def reservoir_sample(items: Iterable[T], size: int, seed: int) -> list[T]:
    """A uniform sample of at most `size` items from a stream of unknown length (Li's algorithm L).

    Holds only the sample in memory and draws O(size * log(n / size)) random numbers.
    """
    if size < 1:
        raise ValueError(f"sample size must be >= 1, received {size}")
    rng = np.random.default_rng(seed)
    sample: list[T] = []
    iterator = iter(items)
    for item in iterator:
        sample.append(item)
        if len(sample) == size:
            break
    else:
        return sample

    def log_uniform() -> float:
        u = rng.random()
        while u == 0.0:
            u = rng.random()
        return math.log(u)

    log_w = log_uniform() / size  # log of W, kept in logs so that 1 - W stays exact for large samples
    skip = math.floor(log_uniform() / math.log(-math.expm1(log_w)))
    for item in iterator:
        if skip > 0:
            skip -= 1
            continue
        sample[int(rng.integers(size))] = item
        log_w += log_uniform() / size
        skip = math.floor(log_uniform() / math.log(-math.expm1(log_w)))
    return sample


@dataclasses.dataclass
class _Counts:
    seen: int = 0
    too_long: int = 0


def _usable(sentences: Iterable[str], max_bytes: int, counts: _Counts) -> Iterator[str]:
    """Non-empty sentences of at most `max_bytes` UTF-8 bytes (SentencePiece skips longer ones)."""
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            continue
        counts.seen += 1
        if len(sentence.encode("utf-8")) > max_bytes:
            counts.too_long += 1
            continue
        yield sentence


def tokenization_stats(model_proto: bytes, sentences: Iterable[str], max_sentences: int = 100_000) -> dict:
    """UNK rate (share of pieces that are `<unk>`) and pieces per whitespace word, over `sentences`."""
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    unk_id = processor.unk_id()
    n_sentences = n_words = n_pieces = n_unk = 0
    for sentence in sentences:
        if n_sentences >= max_sentences:
            break
        if not sentence.strip():
            continue
        ids = processor.encode(sentence)
        n_sentences += 1
        n_words += len(sentence.split())
        n_pieces += len(ids)
        n_unk += ids.count(unk_id)
    return {
        "sentences": n_sentences,
        "words": n_words,
        "pieces": n_pieces,
        "unk_rate": n_unk / n_pieces if n_pieces else 0.0,
        "pieces_per_word": n_pieces / n_words if n_words else 0.0,
    }


def _train(
    sample: list[str],
    vocab_size: int,
    hard_vocab_limit: bool,
    character_coverage: float,
    max_sentence_bytes: int,
    num_threads: int,
) -> bytes:
    """SentencePiece's trainer with ALBERT's settings, on the whole sample; the serialized model."""
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sample),
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab_size,
            hard_vocab_limit=hard_vocab_limit,
            character_coverage=character_coverage,
            normalization_rule_name="nmt_nfkc_cf",
            pad_id=0,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            pad_piece=PAD,
            unk_piece=UNK,
            control_symbols=list(CONTROL_SYMBOLS),
            user_defined_symbols=list(PHI_TOKENS),
            input_sentence_size=0,
            max_sentence_length=max_sentence_bytes,
            num_threads=num_threads,
            minloglevel=1,
        )
    except RuntimeError as error:
        # SentencePiece finds the limit while it builds the seed pieces, before the EM rounds, and
        # names it: "Vocabulary size too high (2000). Please set it to a value <= 701."
        largest = re.search(r"Vocabulary size too high.*<= (\d+)", str(error))
        if largest is None:
            raise
        raise VocabSizeTooLarge(vocab_size, int(largest.group(1)), len(sample)) from None
    return model.getvalue()


def _vocab_lines(processor: spm.SentencePieceProcessor) -> str:
    """The `.vocab` file SentencePiece writes beside a model: piece, tab, score, one line per id."""
    return "".join(
        f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}\n" for i in range(processor.get_piece_size())
    )


def train_sentencepiece(
    sentences: Iterable[str],
    out_dir: str | os.PathLike,
    *,
    vocab_size: int = 30000,
    max_sentences: int = 1_000_000,
    seed: int = 0,
    character_coverage: float = 0.99995,
    hard_vocab_limit: bool = True,
    max_sentence_bytes: int = 4192,
    eval_sentences: Iterable[str] | None = None,
    eval_name: str = "eval",
    num_threads: int = 2,
    vocab_size_fit: str = "error",
) -> TokenizerArtifacts:
    """Trains the unigram model on (a sample of) `sentences`; writes spm.model, spm.vocab, stats.json.

    `sentences` is read once, as a stream. `character_coverage` is ALBERT's 0.99995 by default.
    `hard_vocab_limit=False` lets a corpus too small for `vocab_size` yield a smaller vocabulary
    (SentencePiece otherwise fails); stats.json records the size reached. A size the corpus cannot
    support raises `VocabSizeTooLarge` naming the largest that works, or with `vocab_size_fit="lower"`
    trains that size with a warning. The statistics are measured on `eval_sentences` when given, on
    the training sample otherwise.
    """
    if vocab_size_fit not in VOCAB_SIZE_FITS:
        raise ValueError(f"vocab_size_fit must be one of {VOCAB_SIZE_FITS}, received {vocab_size_fit!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = _Counts()
    sample = reservoir_sample(_usable(sentences, max_sentence_bytes, counts), max_sentences, seed)
    if not sample:
        raise ValueError(f"no usable training sentences ({counts.seen} seen, {counts.too_long} too long)")
    settings = (hard_vocab_limit, character_coverage, max_sentence_bytes, num_threads)
    try:
        model_proto = _train(sample, vocab_size, *settings)
    except VocabSizeTooLarge as too_large:
        if vocab_size_fit != "lower":
            raise
        logging.warning("%s; training vocab_size %d (vocab_size_fit=lower)", too_large, too_large.largest)
        model_proto = _train(sample, too_large.largest, *settings)
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    model_path, vocab_path, stats_path = out / MODEL_FILE, out / VOCAB_FILE, out / STATS_FILE
    model_path.write_bytes(model_proto)
    vocab_path.write_text(_vocab_lines(processor), encoding="utf-8")

    stats = {
        "requested_vocab_size": vocab_size,
        "vocab_size": processor.get_piece_size(),
        "sentences_seen": counts.seen,
        "sentences_too_long": counts.too_long,
        "sentences_used": len(sample),
        "max_sentences": max_sentences,
        "seed": seed,
        "character_coverage": character_coverage,
        "sentencepiece_version": spm.__version__,
        "measured_on": eval_name if eval_sentences is not None else "train",
        **tokenization_stats(model_proto, sample if eval_sentences is None else eval_sentences),
    }
    stats_path.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    return TokenizerArtifacts(
        model_path=model_path, vocab_path=vocab_path, stats_path=stats_path, stats=stats
    )


def vocabulary_sha256(model_proto: bytes) -> str:
    """A vocabulary's identity: the tokenizer artifact, pretraining.json and a fine-tuned model's
    classifier.json record it, and a model is continued or warm-started only when they agree."""
    return hashlib.sha256(model_proto).hexdigest()


def vocabulary(model_proto: bytes) -> Vocabulary:
    """The pretraining-data view of a trained model: special ids, with the PHI tokens never drawn as
    random replacements."""
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    return Vocabulary.from_pieces(pieces, control=(PAD, UNK, *PHI_TOKENS))
