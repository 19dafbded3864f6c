"""The ALBERT rows of `bench/quality.py`: tokenization and packing in numpy, then the project's
fine-tuning recipe (`albert_keras.finetune_loop.finetune`) and the same metric code as every other row.

Tokenization. A SentencePiece model trained on the task's train texts with the pipeline's own trainer
(`components.sentencepiece_tokenizer.train.train_sentencepiece`: ALBERT's unigram settings, lower-casing
in the model), or, with `--init`, the checkpoint's own model (`InitCheckpoint`). Inputs are packed as
the Transform graph packs them: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`, segment ids 0/1, padding
mask 1 on real tokens.

    notes       windows of seq_length - 2 pieces, each `stride` pieces after the one before (at most
                `max_windows`: later pieces are not read), as the pipeline's window_stride. Every window
                trains with its note's label(s); a note's logits are the mean or the max of its windows'
                logits, whichever reads the eval split better (the pipeline's window_pooling "auto").
    pairs       question and passage truncated together to seq_length, one piece from each in turn
                (the pipeline's round robin; it does not window pairs).
    sentences   each word encoded on its own; its first piece carries the word's BIO id, every other
                position -100 (`albert_keras.IGNORE_LABEL`, which the loss skips). A word's tag is read
                at its first piece. A sentence longer than seq_length - 2 pieces is cut: its words past
                the cut are tagged O, so their gold entities count as missed (`Encoded.cut` counts them).

Training: AdamW with linear warmup (10%) and decay, global-norm clipping at 1.0
(`finetune_optimizer`, `warmup_linear_decay`); recipe "best" evaluates the task's primary metric on
eval every `total_steps / evals` steps, keeps the best weights and stops after `patience` evaluations
without a gain; "plain" trains the same steps with no warmup and keeps the last. Afterwards both
choose the window pooling and, for multi-label, per-label thresholds on eval, as the pipeline's
fine-tuning Trainer does after training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from bench import quality_metrics as metrics
from bench.quality_baselines import Predictions
from bench.quality_data import Sentence, TaskData

IGNORE_LABEL = -100  # albert_keras.IGNORE_LABEL, without importing Keras here
POOLINGS = ("mean", "max")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclasses.dataclass(frozen=True)
class AlbertSettings:
    """One budget's ALBERT rows: the from-scratch model, sequence lengths, batch and steps per kind."""

    #: "tiny" (AlbertConfig.preset("tiny")), "small" (E 128, H 256, 4 layers, 4 heads, FFN 1024) or any
    #: preset name ("base": albert-base-v2's shape).
    model: str
    seq_length: dict[str, int]
    batch_size: dict[str, int]
    steps: dict[str, int]
    vocab_size: int
    evals: int = 5
    patience: int = 3
    max_windows: int = 64
    learning_rate: float = 5e-4
    init_learning_rate: float = 5e-5
    mixed_precision: bool = False
    seed: int = 0


def scratch_config(settings: AlbertSettings, vocab_size: int, seq_length: int):
    """The from-scratch model's AlbertConfig, sized for `vocab_size` and `seq_length` positions."""
    from albert_keras import AlbertConfig

    positions = {"max_position_embeddings": max(seq_length, 64)}
    if settings.model == "small":
        return AlbertConfig(
            vocab_size=vocab_size,
            embedding_size=128,
            hidden_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=1024,
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            **positions,
        )
    if settings.model == "tiny":
        return AlbertConfig.preset("tiny", vocab_size=vocab_size, **positions)
    return AlbertConfig.preset(settings.model, vocab_size=vocab_size, **positions)


# -- tokenizer ---------------------------------------------------------------------------------------


class Tokenizer:
    """A SentencePiece model with ALBERT's special pieces; `lowercase` for models that expect the
    caller to lower-case (HF's uncased ALBERT; the pipeline's models fold case themselves)."""

    def __init__(self, model_proto: bytes, lowercase: bool = False, origin: str = ""):
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        self.lowercase = lowercase
        self.origin = origin
        ids = {piece: self.processor.piece_to_id(piece) for piece in ("[CLS]", "[SEP]", "<pad>", "<unk>")}
        unknown = self.processor.unk_id()
        missing = [piece for piece in ("[CLS]", "[SEP]") if ids[piece] == unknown]
        if missing:
            raise ValueError(f"tokenizer {origin or ''} has no {missing} piece: not an ALBERT vocabulary")
        self.cls_id, self.sep_id = ids["[CLS]"], ids["[SEP]"]
        self.pad_id = self.processor.pad_id() if self.processor.pad_id() >= 0 else ids["<pad>"]
        self.unk_id = unknown

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        if self.lowercase:
            text = " ".join(text.lower().split())
        return self.processor.encode(text)

    @classmethod
    def from_file(cls, path: str | Path, lowercase: bool = False) -> Tokenizer:
        return cls(Path(path).read_bytes(), lowercase, origin=Path(path).name)

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int, seed: int = 0) -> Tokenizer:
        """The pipeline's SentencePiece trainer on `texts` split into sentences; a corpus too small for
        `vocab_size` gets the largest size it supports."""
        from components.sentencepiece_tokenizer.train import train_sentencepiece

        with tempfile.TemporaryDirectory(prefix="quality-spm-") as directory:
            artifacts = train_sentencepiece(
                training_sentences(texts), directory, vocab_size=vocab_size, seed=seed, vocab_size_fit="lower"
            )
            return cls(artifacts.model_path.read_bytes(), origin="trained on the train split")


def training_sentences(texts: Sequence[str]) -> Iterator[str]:
    """The lines of `texts`, long lines cut after sentence-ending punctuation."""
    for text in texts:
        for line in text.splitlines():
            for sentence in _SENTENCE_END.split(line.strip()):
                if sentence:
                    yield sentence


# -- packing -----------------------------------------------------------------------------------------


def window_starts(length: int, budget: int, stride: int, max_windows: int) -> list[int]:
    """First piece of each window of a `length`-piece text: one window, plus one per `stride` past the
    first `budget` pieces, at most `max_windows` (the pipeline's `WindowSpec.count`)."""
    extra = max(length - budget, 0)
    count = min(1 + (extra + stride - 1) // stride, max_windows)
    return [k * stride for k in range(count)]


def pack(
    a: Sequence[int], b: Sequence[int] | None, seq_length: int, tokenizer: Tokenizer
) -> tuple[list, list]:
    """(token ids, segment ids) of `[CLS] a [SEP] (b [SEP])`, truncated round robin to seq_length."""
    if b is None:
        a = list(a[: seq_length - 2])
        return [tokenizer.cls_id, *a, tokenizer.sep_id], [0] * (len(a) + 2)
    budget = seq_length - 3
    keep_a = min(len(a), max((budget + 1) // 2, budget - len(b)))
    keep_b = min(len(b), budget - keep_a)
    a, b = list(a[:keep_a]), list(b[:keep_b])
    tokens = [tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id]
    return tokens, [0] * (len(a) + 2) + [1] * (len(b) + 1)


@dataclasses.dataclass
class Encoded:
    """A split as model inputs: `inputs` [windows, seq] int32 arrays, each window's unit, its targets,
    and for sentences each word's first-piece position (-1: cut)."""

    inputs: dict[str, np.ndarray]
    unit: np.ndarray
    targets: np.ndarray
    units: int
    word_positions: list[np.ndarray] | None = None
    #: Units not read whole: notes past max_windows, pairs truncated, sentences cut.
    cut: int = 0

    @property
    def windows(self) -> int:
        return len(self.unit)


def _to_arrays(rows: Sequence[tuple[list, list]], seq_length: int, pad_id: int) -> dict[str, np.ndarray]:
    tokens = np.full((len(rows), seq_length), pad_id, dtype=np.int32)
    segments = np.zeros((len(rows), seq_length), dtype=np.int32)
    mask = np.zeros((len(rows), seq_length), dtype=np.int32)
    for row, (token_ids, segment_ids) in enumerate(rows):
        tokens[row, : len(token_ids)] = token_ids
        segments[row, : len(segment_ids)] = segment_ids
        mask[row, : len(token_ids)] = 1
    return {"token_ids": tokens, "segment_ids": segments, "padding_mask": mask}


def encode_split(
    task: TaskData, split: str, tokenizer: Tokenizer, seq_length: int, stride: int, max_windows: int
) -> Encoded:
    """One split of a task as windows (notes), packed pairs or tagged sentences (module docstring)."""
    units = task.splits[split]
    if task.kind == "entities":
        return _encode_sentences(units, tokenizer, seq_length)
    gold = metrics.gold_of(task, split)
    rows, unit, cut = [], [], 0
    for index, example in enumerate(units):
        ids = tokenizer.encode(example.text)
        if task.kind == "pair":
            passage = tokenizer.encode(example.text_b)
            rows.append(pack(ids, passage, seq_length, tokenizer))
            cut += len(ids) + len(passage) > seq_length - 3
            unit.append(index)
            continue
        budget = seq_length - 2
        starts = window_starts(len(ids), budget, stride, max_windows)
        cut += starts[-1] + budget < len(ids)
        for start in starts:
            rows.append(pack(ids[start : start + budget], None, seq_length, tokenizer))
            unit.append(index)
    unit_array = np.asarray(unit, dtype=np.int64)
    targets = gold[unit_array] if len(unit_array) else gold[:0]
    targets = targets.astype(np.float32 if task.kind == "multi_label" else np.int32)
    return Encoded(_to_arrays(rows, seq_length, tokenizer.pad_id), unit_array, targets, len(units), cut=cut)


def _encode_sentences(sentences: Sequence[Sentence], tokenizer: Tokenizer, seq_length: int) -> Encoded:
    rows, labels, positions, cut = [], [], [], 0
    for sentence in sentences:
        pieces, piece_labels, first = [], [], []
        for word, tag in zip(sentence.words, sentence.tags, strict=True):
            ids = tokenizer.encode(word) or [tokenizer.unk_id]
            first.append(len(pieces) + 1 if len(pieces) + 1 <= seq_length - 2 else -1)  # +1: [CLS]
            pieces += ids
            piece_labels += [tag] + [IGNORE_LABEL] * (len(ids) - 1)
        cut += len(pieces) > seq_length - 2
        tokens, segments = pack(pieces, None, seq_length, tokenizer)
        row_labels = np.full(seq_length, IGNORE_LABEL, dtype=np.int32)
        kept = piece_labels[: seq_length - 2]
        row_labels[1 : 1 + len(kept)] = kept
        rows.append((tokens, segments))
        labels.append(row_labels)
        positions.append(np.asarray(first, dtype=np.int64))
    targets = np.stack(labels) if labels else np.zeros((0, seq_length), dtype=np.int32)
    unit = np.arange(len(sentences), dtype=np.int64)
    return Encoded(
        _to_arrays(rows, seq_length, tokenizer.pad_id), unit, targets, len(sentences), positions, cut
    )


def training_batches(
    encoded: Encoded, batch_size: int, seed: int
) -> Callable[[], Iterator[tuple[dict, np.ndarray]]]:
    """A factory of one shuffled pass over the windows in full batches (the last one filled by wrapping
    around, so every batch has one shape); each call shuffles anew."""
    passes = [0]

    def one_pass() -> Iterator[tuple[dict, np.ndarray]]:
        order = np.random.default_rng(seed + passes[0]).permutation(encoded.windows)
        passes[0] += 1
        order = np.resize(order, -(-len(order) // batch_size) * batch_size)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield {k: v[rows] for k, v in encoded.inputs.items()}, encoded.targets[rows]

    return one_pass


def window_logits(model: Any, encoded: Encoded, batch_size: int) -> np.ndarray:
    """The model's float32 logits for every window, in batches of one shape (the last padded)."""
    outputs = []
    for start in range(0, encoded.windows, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in encoded.inputs.items()}
        rows = len(batch["token_ids"])
        if rows < batch_size:
            batch = {
                k: np.concatenate([v, np.repeat(v[-1:], batch_size - rows, axis=0)]) for k, v in batch.items()
            }
        outputs.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32)[:rows])
    return np.concatenate(outputs) if outputs else np.zeros((0,))


def pool(logits: np.ndarray, unit: np.ndarray, units: int, how: str) -> np.ndarray:
    """A unit's logits from its windows': their mean or their maximum."""
    if how == "mean":
        total = np.zeros((units, logits.shape[-1]))
        np.add.at(total, unit, logits)
        return total / np.maximum(np.bincount(unit, minlength=units), 1)[:, None]
    pooled = np.full((units, logits.shape[-1]), -np.inf)
    np.maximum.at(pooled, unit, logits)
    return pooled


def word_tags(logits: np.ndarray, encoded: Encoded) -> list[list[int]]:
    """Each sentence's BIO id per word, read at its first piece (O for words past the cut)."""
    predicted = logits.argmax(axis=-1)  # (sentences, seq)
    answers = []
    for row, positions in enumerate(encoded.word_positions or []):
        tags = np.zeros(len(positions), dtype=np.int64)
        read = positions >= 0
        tags[read] = predicted[row, positions[read]]
        answers.append(tags.tolist())
    return answers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def read_split(
    task: TaskData, logits: np.ndarray, encoded: Encoded, how: str, thresholds: np.ndarray | None = None
) -> Any:
    """A split's answers from its window logits, pooled `how`: class ids, or multi-label decisions at
    `thresholds` (0.5 when None), or word tags."""
    if task.kind == "entities":
        return word_tags(logits, encoded)
    pooled = pool(logits, encoded.unit, encoded.units, how)
    if task.kind == "multi_label":
        cut = 0.5 if thresholds is None else thresholds
        return (_sigmoid(pooled) >= cut).astype(np.int64)
    return pooled.argmax(axis=-1)


def eval_reading(task: TaskData, logits: np.ndarray, encoded: Encoded, gold: Any) -> dict[str, Any]:
    """Each pooling's primary eval figure (multi-label: at thresholds chosen on these notes, as the
    pipeline chooses them) and its thresholds; entities read one way only."""
    poolings = ("first",) if task.kind == "entities" else POOLINGS
    readings = {}
    for how in poolings:
        thresholds = None
        if task.kind == "multi_label":
            probabilities = _sigmoid(pool(logits, encoded.unit, encoded.units, how))
            thresholds, _ = metrics.decide_multi_label(probabilities, gold, probabilities[:0])
        answers = read_split(task, logits, encoded, how, thresholds)
        figure = metrics.point_scores(task.kind, gold, answers, len(task.label_names))[
            metrics.primary(task.kind)
        ]
        readings[how] = {"figure": figure, "thresholds": thresholds, "answers": answers}
    return readings


def best_reading(readings: dict[str, Any]) -> str:
    """The pooling with the higher eval figure; mean on a tie (the pipeline's rule)."""
    return max(readings, key=lambda how: (readings[how]["figure"], how == "mean"))


# -- checkpoints and models --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InitCheckpoint:
    """`--init`: a `.keras` AlbertPretrainer (or AlbertBackbone) file, as the pretraining Trainer writes
    (`pretrainer.keras`), with its SentencePiece model `spm.model` beside it (the tokenizer artifact's
    file name) unless `tokenizer` names one; or a HF ALBERT checkpoint directory with its `spiece.model`
    (text lower-cased first when its tokenizer_config.json says do_lower_case, the default)."""

    path: str
    tokenizer: str | None = None

    @property
    def is_hf(self) -> bool:
        return os.path.isdir(self.path)

    def load_tokenizer(self) -> Tokenizer:
        if self.tokenizer:
            return Tokenizer.from_file(
                self.tokenizer, lowercase=self._hf_lowercase() if self.is_hf else False
            )
        if self.is_hf:
            return Tokenizer.from_file(
                os.path.join(self.path, "spiece.model"), lowercase=self._hf_lowercase()
            )
        beside = Path(self.path).parent
        candidates = [beside / "spm.model", *sorted(beside.glob("*.model"))]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"--init {Path(self.path).name}: no SentencePiece model (spm.model) beside it; "
                "name one with --init-tokenizer"
            )
        return Tokenizer.from_file(found)

    def _hf_lowercase(self) -> bool:
        config = os.path.join(self.path, "tokenizer_config.json")
        if not os.path.exists(config):
            return True
        with open(config, encoding="utf-8") as f:
            return bool(json.load(f).get("do_lower_case", True))

    def load_backbone(self) -> Any:
        import keras

        from albert_keras import AlbertBackbone

        if self.is_hf:
            from albert_keras.convert.hf_files import load_hf_model

            return load_hf_model(self.path, task="backbone")
        model = keras.saving.load_model(self.path, safe_mode=True)
        backbone = model if isinstance(model, AlbertBackbone) else getattr(model, "backbone", None)
        if not isinstance(backbone, AlbertBackbone):
            raise ValueError(
                f"--init {Path(self.path).name} holds a {type(model).__name__}, not an ALBERT model"
            )
        return backbone


def _task_model(task: TaskData, backbone: Any) -> Any:
    from albert_keras import AlbertClassifier, AlbertTokenClassifier

    if task.kind == "entities":
        return AlbertTokenClassifier(backbone, num_labels=len(task.label_names))
    problem = "multi_label" if task.kind == "multi_label" else "single_label"
    return AlbertClassifier(backbone, len(task.label_names), problem_type=problem)


def _set_precision(settings: AlbertSettings) -> str:
    """mixed_bfloat16 where the budget asks for it and an accelerator is there; float32 otherwise."""
    import keras

    policy = "float32"
    if settings.mixed_precision and accelerator() != "cpu":
        policy = "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def accelerator() -> str:
    """The platform the Keras backend computes on: "gpu", "tpu" or "cpu"."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def run_albert(
    task: TaskData,
    tokenizer: Tokenizer,
    settings: AlbertSettings,
    *,
    recipe: str = "best",
    init: InitCheckpoint | None = None,
    encoded_cache: dict | None = None,
) -> Predictions:
    """Fine-tunes ALBERT on the task (from random init, or from `init`) and answers eval and test."""
    import keras

    from albert_keras import AlbertBackbone
    from albert_keras.finetune_loop import eval_interval, finetune, finetune_optimizer, warmup_linear_decay

    policy = _set_precision(settings)
    keras.utils.set_random_seed(settings.seed)
    backbone = init.load_backbone() if init is not None else None
    seq_length = settings.seq_length[task.kind]
    if backbone is not None:
        seq_length = min(seq_length, backbone.config.max_position_embeddings)
        if tokenizer.vocab_size > backbone.config.vocab_size:
            raise ValueError(
                f"--init: the tokenizer has {tokenizer.vocab_size} pieces, the checkpoint's embeddings "
                f"{backbone.config.vocab_size}"
            )
    stride = max((seq_length - 2) // 2, 1)
    key = (task.name, tokenizer.origin, seq_length)
    encoded = (encoded_cache or {}).get(key)
    if encoded is None:
        encoded = {
            split: encode_split(task, split, tokenizer, seq_length, stride, settings.max_windows)
            for split in ("train", "eval", "test")
        }
        if encoded_cache is not None:
            encoded_cache[key] = encoded
    if backbone is None:
        backbone = AlbertBackbone(scratch_config(settings, tokenizer.vocab_size, seq_length))
    model = _task_model(task, backbone)
    total_steps = settings.steps[task.kind]
    batch_size = settings.batch_size[task.kind]
    peak = settings.init_learning_rate if init is not None else settings.learning_rate
    warmup = 0.1 if recipe == "best" else 0.0
    model.compile(
        optimizer=finetune_optimizer(warmup_linear_decay(peak, total_steps, warmup_fraction=warmup))
    )

    eval_gold = metrics.gold_of(task, "eval")

    def evaluate(trained: Any) -> float:
        logits = window_logits(trained, encoded["eval"], batch_size)
        readings = eval_reading(task, logits, encoded["eval"], eval_gold)
        return max(reading["figure"] for reading in readings.values())

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"quality-{task.name}-") as checkpoints:
        result = finetune(
            model,
            training_batches(encoded["train"], batch_size, settings.seed),
            total_steps=total_steps,
            evaluate=evaluate if recipe == "best" else None,
            eval_every=eval_interval(total_steps, settings.evals) if recipe == "best" else total_steps,
            patience=settings.patience if recipe == "best" else 0,
            checkpoint_dir=checkpoints,
            metric_name=metrics.primary(task.kind),
            recipe=recipe,
            verbose=0,
        )
    train_seconds = time.perf_counter() - started

    eval_logits = window_logits(model, encoded["eval"], batch_size)
    readings = eval_reading(task, eval_logits, encoded["eval"], eval_gold)
    how = best_reading(readings)
    test_answers = read_split(
        task,
        window_logits(model, encoded["test"], batch_size),
        encoded["test"],
        how,
        readings[how]["thresholds"],
    )
    details = {
        "recipe": recipe,
        "init": Path(init.path).name if init is not None else None,
        "tokenizer": tokenizer.origin,
        "vocab_size": tokenizer.vocab_size,
        "seq_length": seq_length,
        "batch_size": batch_size,
        "peak_learning_rate": peak,
        "steps_planned": total_steps,
        "steps_trained": result["steps_trained"],
        "best_step": result["best_step"],
        "stopped_early": result["stopped_early"],
        "train_seconds": round(train_seconds, 1),
        "eval_curve": [{"step": e["step"], "metric": round(e["metric"], 4)} for e in result["evals"]],
        "reading": how,
        "eval_by_reading": {k: round(v["figure"], 4) for k, v in readings.items()},
        "windows": {split: encoded[split].windows for split in encoded},
        "units_cut": {split: encoded[split].cut for split in encoded},
        "model": {
            "hidden_size": backbone.config.hidden_size,
            "num_hidden_layers": backbone.config.num_hidden_layers,
            "embedding_size": backbone.config.embedding_size,
            "parameters": int(model.count_params()),
        },
        "precision_policy": policy,
        "keras_backend": keras.backend.backend(),
    }
    return Predictions(readings[how]["answers"], test_answers, details)
