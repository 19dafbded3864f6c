"""What pretraining ALBERT on public clinical and biomedical text gains on the downstream tasks of
`bench/quality.py`, measured in one run: the same fine-tuning from random init (albert_scratch) and from
the pretrained model (albert_init), on the same tasks, splits and budget, with the difference between
the two and the pretraining curve.

    1. corpus       bench/pretraining_corpus.py: MTSamples train notes, MedQuAD answers, PubMedQA train
                    contexts, NCBI-disease train abstracts, with nothing of an eval or test split. It is
                    written in google-research's text format (OUT/corpus/pretrain.txt). 2% of its
                    documents, chosen by the sha256 bucket of their id (the ExampleGen's rule), are held
                    out in OUT/corpus/heldout.txt and never trained on.
    2. vocabulary   the pipeline's SentencePiece trainer (components/sentencepiece_tokenizer/train.py:
                    unigram, [CLS] [SEP] [MASK], case folded in the model), trained on pretrain.txt at
                    the budget's vocabulary size: OUT/spm.model.
    3. pretraining  an AlbertPretrainer (MLM + sentence order) with the shape of the budget's
                    from-scratch row (`quality_albert.scratch_config`), positions for the longest
                    fine-tuning sequence, trained on sequences of that length. It uses LAMB with
                    ALBERT's warmup and linear decay, `pretrain_loop.pretrain`, and instances from
                    `pretraining_data` (n-gram masking, sentence order), masked anew in each of
                    `mask_passes` passes. The steps are planned from a timed calibration (the learning
                    rate schedule needs them), and training stops at `--minutes` of training time (the
                    time inside training steps: the first step's compilation, checkpoints and
                    evaluations are timed apart) or at the planned steps.
                    Held-out MLM accuracy, SOP accuracy (beside the majority label's share: short
                    sequences make many single-sentence pairs, always labelled swapped) and loss are
                    measured before training and every 1/`eval_points` of the planned steps.
    4. outputs      OUT/pretrainer.keras (no optimizer state) with spm.model beside it, as `--init`
                    takes them; OUT/albert_config.json and OUT/weights/ (the weights in files of at most
                    16 MiB, with Keras's sharded .weights.json index; `load_sharded_pretrainer` reads
                    them back), so that the model fits in a repository or a 64 MiB transfer.
    5. rows         quality.py's albert_scratch and albert_init rows (`quality_albert.run_albert`) on
                    each task, same budget; init fine-tunes from OUT/pretrainer.keras with its own
                    tokenizer.
    6. report       one table per task: both rows with 95% bootstrap intervals over the test units, and
                    init - scratch with the interval of a paired bootstrap (the same resampled units for
                    both rows). Then the curve, each point with its interval over held-out instances.
                    Every figure has an interval. Everything goes to `--json` (default
                    OUT/pretrain_gain.json).

    .venv/bin/python bench/pretrain_gain.py --budget smoke --out runs/gain_smoke       # 3 to 7 minutes
    .venv/bin/python bench/pretrain_gain.py --budget cpu --out runs/gain_cpu            # 45 min pretraining
    KERAS_BACKEND=jax python3 bench/pretrain_gain.py --budget gpu --out runs/gain_gpu   # 5 min, one GPU

Stages, so that a machine without the shared data or TensorFlow can pretrain (bench/device_check.sh):

    --prepare-only       stages 1 and 2 only: OUT/tokens.npz (train and held-out documents as piece
                         ids, compressed), OUT/spm.model and OUT/prepared.json (budget, settings, corpus
                         and tokenizer records). No corpus text is kept.
    --from-prepared DIR  stages 3 on from what --prepare-only wrote into DIR: the same documents, the
                         same vocabulary, so the same instances as a run in one go.
    --skip-rows          stages 1 to 4 (and the curve), no fine-tuning rows: the task data are not read.
    --rows-only --init DIR
                         stage 5 and the report for a --skip-rows run whose OUT was DIR: its report,
                         spm.model and weights/ (pretrainer.keras is rebuilt from them into OUT when
                         absent, as when only the files of at most 16 MiB came back from a GPU machine).

Under KERAS_BACKEND=jax, --from-prepared --skip-rows needs numpy, sentencepiece, jax and keras (with
namex and optree), and imports no TensorFlow: the tests run it with TensorFlow unimportable.

    KERAS_BACKEND=jax python3 bench/pretrain_gain.py --budget gpu --from-prepared PREP --skip-rows --out G
    .venv/bin/python bench/pretrain_gain.py --budget gpu --rows-only --init G --out runs/gain_gpu_rows

Budgets are quality.py's: the same model shape, vocabulary size, fine-tuning steps and caps. smoke uses
a tiny model, 400 corpus documents and 30 s of pretraining; its eight rows are most of its time (about
30 s each on two busy cores, a TensorFlow compile apiece). cpu uses the small model (E 128, H 256, 4
layers) with 45 minutes of pretraining at 16 x 256; it is meant for the default TensorFlow backend. gpu
uses the albert-base shape, 5 minutes at 64 x 512 in bfloat16 where an accelerator is present, and
instances made by one worker process per core. `--minutes` overrides the pretraining time. No
`--preset`: a pretrained model of another shape than the scratch row would confound size with
pretraining. Where ../shared/data (or `--data`) lacks a dataset, the bundled samples stand in, and the
header says so. Nothing from the corpus is printed, only counts and metrics.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import pretraining_corpus as corpus_lib  # noqa: E402
from bench import quality  # noqa: E402
from bench import quality_metrics as metrics  # noqa: E402
from bench.quality_data import TASKS, find_sources, load_tasks  # noqa: E402
from components import scores  # noqa: E402
from components.clinical_example_gen.split import parse_splits, split_index  # noqa: E402

#: 2% of the corpus documents, by the sha256 bucket of their id, held out from training and vocabulary.
HELDOUT_SPLITS = parse_splits({"heldout": 1, "train": 49})
ROWS = ("albert_scratch", "albert_init")
MODEL_FILE, CONFIG_FILE, SPM_FILE = "pretrainer.keras", "albert_config.json", "spm.model"
WEIGHTS_DIR, WEIGHTS_INDEX = "weights", "pretrainer.weights.json"
CORPUS_DIR, TRAIN_TEXT, HELDOUT_TEXT = "corpus", "pretrain.txt", "heldout.txt"
REPORT_FILE = "pretrain_gain.json"
#: What `--prepare-only` writes (module docstring, "Stages").
PREPARED_FILE, TOKENS_FILE, PREPARED_FORMAT = "prepared.json", "tokens.npz", 1
#: Largest weight file written: a repository's comfortable file size, four to a 64 MiB transfer.
MAX_WEIGHT_FILE_BYTES = 16 * 1024 * 1024
MASKED_LM_PROB = 0.15


@dataclasses.dataclass(frozen=True)
class PretrainSettings:
    """How one budget pretrains. The model shape, vocabulary size and sequence length follow the
    budget's from-scratch row (`quality.budget(name).albert`)."""

    minutes: float
    batch_size: int
    peak_learning_rate: float
    #: Times every document is masked anew (dynamic masking); passes are cycled, reshuffled, after.
    mask_passes: int
    #: Curve points after the one before training: the planned steps are cut into this many chunks.
    eval_points: int
    #: Held-out instances scored at each point (at most).
    eval_instances: int
    #: Corpus documents kept (the first by sha256 of their id); None keeps all.
    max_documents: int | None = None
    warmup_fraction: float = 0.1
    seed: int = 0


PRETRAIN: dict[str, PretrainSettings] = {
    "smoke": PretrainSettings(
        minutes=0.5,
        batch_size=8,
        peak_learning_rate=2e-3,
        mask_passes=1,
        eval_points=3,
        eval_instances=64,
        max_documents=400,
    ),
    "cpu": PretrainSettings(
        minutes=45.0,
        batch_size=16,
        peak_learning_rate=1.76e-3,
        mask_passes=3,
        eval_points=10,
        eval_instances=512,
    ),
    "gpu": PretrainSettings(
        minutes=5.0,
        batch_size=64,
        peak_learning_rate=1.76e-3,
        mask_passes=8,
        eval_points=10,
        eval_instances=2048,
    ),
}


def _log(message: str) -> None:
    print(f"[pretrain_gain] {message}", file=sys.stderr, flush=True)


# -- 1. corpus ---------------------------------------------------------------------------------------


def _id_hash(document: corpus_lib.Document) -> str:
    return hashlib.sha256(document.id.encode("utf-8")).hexdigest()


def select_documents(
    documents: Sequence[corpus_lib.Document], max_documents: int | None
) -> list[corpus_lib.Document]:
    """At most `max_documents`: those with the smallest id hashes (every source in proportion), in
    corpus order."""
    if max_documents is None or len(documents) <= max_documents:
        return list(documents)
    chosen = {d.id for d in sorted(documents, key=_id_hash)[:max_documents]}
    return [d for d in documents if d.id in chosen]


def heldout_split(
    documents: Sequence[corpus_lib.Document],
) -> tuple[list[corpus_lib.Document], list[corpus_lib.Document]]:
    """(train, held-out) documents by the bucket of their id (HELDOUT_SPLITS)."""
    names = [name for name, _ in HELDOUT_SPLITS]
    parts: dict[str, list[corpus_lib.Document]] = {name: [] for name in names}
    for document in documents:
        parts[names[split_index(document.id, HELDOUT_SPLITS)]].append(document)
    return parts["train"], parts["heldout"]


# -- 2./3. vocabulary and instances ------------------------------------------------------------------


def _instances_of(
    documents: list[list[list[int]]], pool: list, vocab: Any, masking: Any, seed: int
) -> dict[str, np.ndarray]:
    """Padded instances of `documents` (each seeded by its content hash, so any chunking gives the same
    instances), stacked into arrays. Top level: it runs in worker processes."""
    from albert_keras.pretraining_data import document_instances, document_key, padded

    rows = [
        padded(instance, vocab, masking)
        for document in documents
        for instance in document_instances(document, document_key(document), vocab, masking, seed, pool)
    ]
    if not rows:
        return {}
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def _worker_environment() -> None:
    """In an instance worker, before it imports Keras: the numpy backend and no accelerator. Masking is
    numpy; a worker must not load TensorFlow or claim GPU memory beside the training process."""
    os.environ.update(KERAS_BACKEND="numpy", JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")


def _compact(arrays: dict[str, np.ndarray], vocab_size: int) -> dict[str, np.ndarray]:
    """The same arrays in narrower integer types (ids fit int16 below 32768 pieces); `_widen` undoes it."""
    ids = np.int16 if vocab_size < 2**15 else np.int32
    narrow = {"token_ids": ids, "mlm_labels": ids, "segment_ids": np.int8, "padding_mask": np.int8}
    narrow |= {"mask_positions": np.int16, "mlm_weights": np.int8, "sop_labels": np.int8}
    return {name: value.astype(narrow[name]) for name, value in arrays.items()}


def make_passes(
    documents: list[list[list[int]]], vocab: Any, masking: Any, seeds: Sequence[int], workers: int
) -> list[dict[str, np.ndarray]]:
    """One masking pass of all instances per seed. With `workers` > 1, chunks of documents are masked in
    that many spawned processes (each imports Keras's numpy backend once, some seconds); the result is
    the same."""
    from albert_keras.pretraining_data import document_key, random_pool

    pool = random_pool(((document_key(d), d) for d in documents), 1000)
    chunks = [documents[i :: workers * 4] for i in range(workers * 4)] if workers > 1 else [documents]
    jobs = [(chunk, seed) for seed in seeds for chunk in chunks]
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # no fork of a process that may hold JAX threads
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_environment
        ) as executor:
            chunks_, seeds_ = zip(*jobs, strict=True)
            parts = list(
                executor.map(_instances_of, chunks_, repeat(pool), repeat(vocab), repeat(masking), seeds_)
            )
    else:
        parts = [_instances_of(chunk, pool, vocab, masking, seed) for chunk, seed in jobs]
    passes = []
    for index in range(len(seeds)):
        made = [part for part in parts[index * len(chunks) : (index + 1) * len(chunks)] if part]
        if not made:
            raise ValueError("the corpus made no pretraining instance: too few or too short documents")
        arrays = {name: np.concatenate([part[name] for part in made]) for name in made[0]}
        passes.append(_compact(arrays, len(vocab.pieces)))
    return passes


def _widen(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    x = {
        k: arrays[k].astype(np.int32) for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")
    }
    y = {
        "mlm_labels": arrays["mlm_labels"].astype(np.int32),
        "mlm_weights": arrays["mlm_weights"].astype(np.float32),
        "sop_labels": arrays["sop_labels"].astype(np.int32),
    }
    return x, y


class InstanceBatches:
    """Endless (x, y) batches of full size: the masking passes in turn, each reshuffled on every reuse.
    `batches(step)` is the `make_batches` of `pretrain_loop.pretrain`."""

    def __init__(self, passes: Sequence[dict[str, np.ndarray]], batch_size: int, seed: int):
        if min(len(p["token_ids"]) for p in passes) < batch_size:
            raise ValueError(f"a masking pass has fewer instances than one batch ({batch_size})")
        self.passes, self.batch_size, self.seed = list(passes), batch_size, seed

    def batches(self, step: int = 0) -> Iterator[tuple[dict, dict]]:
        """The batches from step `step` on (those before it are drawn and dropped)."""
        batches = iter(self)
        for _ in range(step):
            next(batches)
        return batches

    def __iter__(self) -> Iterator[tuple[dict, dict]]:
        cycle = 0
        while True:
            arrays = self.passes[cycle % len(self.passes)]
            order = np.random.default_rng([self.seed, cycle]).permutation(len(arrays["token_ids"]))
            for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
                rows = order[start : start + self.batch_size]
                yield _widen({k: v[rows] for k, v in arrays.items()})
            cycle += 1


# -- 3. pretraining ----------------------------------------------------------------------------------


class HeldoutScorer:
    """MLM accuracy, SOP accuracy and loss (the model's: weighted MLM cross-entropy + SOP
    cross-entropy) on fixed held-out instances, each with a 95% bootstrap interval over instances."""

    def __init__(self, model: Any, instances: dict[str, np.ndarray], batch_size: int, samples: int):
        import keras
        from keras import ops

        self.x, self.y = _widen(instances)
        self.batch_size, self.samples = batch_size, samples
        swapped = float(self.y["sop_labels"].mean())
        #: The SOP accuracy of always answering the more frequent label.
        self.sop_majority = max(swapped, 1.0 - swapped)
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in self.x}
        labels = keras.Input(shape=(None,), dtype="int32", name="mlm_labels")
        order = keras.Input(shape=(), dtype="int32", name="sop_labels")
        outputs = model(inputs)
        mlm_logits, sop_logits = outputs["mlm_logits"], outputs["sop_logits"]  # (batch, P, vocab), (batch, 2)
        self.scorer = keras.Model(
            {**inputs, "mlm_labels": labels, "sop_labels": order},
            {
                "mlm_hit": ops.cast(
                    ops.equal(ops.cast(ops.argmax(mlm_logits, -1), "int32"), labels), "float32"
                ),
                "mlm_ce": ops.sparse_categorical_crossentropy(labels, mlm_logits, from_logits=True),
                "sop_hit": ops.cast(
                    ops.equal(ops.cast(ops.argmax(sop_logits, -1), "int32"), order), "float32"
                ),
                "sop_ce": ops.sparse_categorical_crossentropy(order, sop_logits, from_logits=True),
            },
        )

    @property
    def instances(self) -> int:
        return len(self.y["sop_labels"])

    def _outputs(self) -> dict[str, np.ndarray]:
        """The scorer's outputs for every instance, in batches of one shape (the last padded)."""
        feed = {**self.x, "mlm_labels": self.y["mlm_labels"], "sop_labels": self.y["sop_labels"]}
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, self.instances, self.batch_size):
            batch = {k: v[start : start + self.batch_size] for k, v in feed.items()}
            rows = len(batch["sop_labels"])
            if rows < self.batch_size:
                batch = {
                    k: np.concatenate([v, np.repeat(v[-1:], self.batch_size - rows, 0)])
                    for k, v in batch.items()
                }
            out = self.scorer.predict_on_batch(batch)
            parts.append({k: np.asarray(v, np.float64)[:rows] for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def score(self) -> dict[str, dict[str, float]]:
        out = self._outputs()
        weights = self.y["mlm_weights"].astype(np.float64)
        hits, ces, counts = (
            (out["mlm_hit"] * weights).sum(1),
            (out["mlm_ce"] * weights).sum(1),
            weights.sum(1),
        )

        def statistic(indices: np.ndarray) -> list[float]:
            masked = max(counts[indices].sum(), 1e-9)
            sop_ce = out["sop_ce"][indices].mean() if len(indices) else 0.0
            return [
                hits[indices].sum() / masked,
                out["sop_hit"][indices].mean() if len(indices) else 0.0,
                ces[indices].sum() / masked + sop_ce,
            ]

        values = statistic(np.arange(self.instances))
        low, high = scores.bootstrap(self.instances, statistic, samples=self.samples, seed=0)
        names = ("mlm_accuracy", "sop_accuracy", "loss")
        return {
            name: {"value": float(values[i]), "low": float(low[i]), "high": float(high[i])}
            for i, name in enumerate(names)
        }


def _clock(budget_s: float, max_steps: int) -> Any:
    """A callback that sums the time inside training steps after the first (whose compilation is timed
    apart, as are checkpoints and evaluations between steps) and stops training at `budget_s` of it or
    at `max_steps` steps."""
    import keras

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps, self.seconds, self.first_step_seconds, self.eval_seconds = 0, 0.0, 0.0, 0.0
            self.step_started = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self.step_started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            elapsed = time.perf_counter() - self.step_started
            if self.steps == 1:
                self.first_step_seconds = elapsed
            else:
                self.seconds += elapsed
            if self.steps >= max_steps or self.seconds >= budget_s:
                self.model.stop_training = True

    return Clock()


def _curve(scorer: HeldoutScorer, clock: Any, curve: list) -> Any:
    """A callback that appends a held-out point to `curve` at the end of every chunk of steps."""
    import keras

    class Curve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            started = time.perf_counter()
            point = {"step": clock.steps, "seconds": round(clock.seconds, 1), **scorer.score()}
            curve.append(point)
            clock.eval_seconds += time.perf_counter() - started
            _log(
                f"step {point['step']} ({point['seconds']} s): held-out MLM accuracy "
                f"{point['mlm_accuracy']['value']:.3f}, SOP accuracy {point['sop_accuracy']['value']:.3f}"
            )

    return Curve()


def _set_precision(mixed: bool) -> str:
    """mixed_bfloat16 where the budget asks for it and an accelerator is there (as the rows decide)."""
    import keras

    from bench.quality_albert import accelerator

    policy = "mixed_bfloat16" if mixed and accelerator() != "cpu" else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def calibrate(model: Any, batches: InstanceBatches, steps: int = 10) -> tuple[float, float]:
    """(seconds of the first step, which compiles; seconds per step after it), timed as the run times
    them (`fit` on the same batches, the same clock), with a learning rate of zero, which leaves the
    weights as they were."""
    from albert_keras.optimization import Lamb

    model.compile(optimizer=Lamb(learning_rate=0.0))
    clock = _clock(math.inf, steps + 1)
    model.fit(batches.batches(), steps_per_epoch=steps + 1, epochs=1, callbacks=[clock], verbose=0)
    return clock.first_step_seconds, clock.seconds / steps


def pretrain_model(
    config: Any,
    train_passes: list[dict[str, np.ndarray]],
    heldout: dict[str, np.ndarray],
    settings: PretrainSettings,
    minutes: float,
    bootstrap_samples: int,
) -> tuple[Any, dict[str, Any]]:
    """Trains an AlbertPretrainer for `minutes` of training time; returns it and the record of the run."""
    import keras

    from albert_keras import AlbertBackbone, AlbertPretrainer
    from albert_keras.optimization import Lamb, WarmupPolynomialDecay
    from albert_keras.pretrain_loop import pretrain

    keras.utils.set_random_seed(settings.seed)
    model = AlbertPretrainer(AlbertBackbone(config))
    batches = InstanceBatches(train_passes, settings.batch_size, settings.seed)
    first_step_s, step_s = calibrate(model, batches)
    budget_s = minutes * 60.0
    max_steps = max(1, int(budget_s / step_s * 0.95))
    eval_every = max(1, math.ceil(max_steps / settings.eval_points))
    warmup = int(settings.warmup_fraction * max_steps)
    model.compile(optimizer=Lamb(WarmupPolynomialDecay(settings.peak_learning_rate, max_steps, warmup)))
    _log(
        f"calibrated {step_s:.3f} s a step ({first_step_s:.1f} s the first): planning {max_steps} steps in "
        f"{minutes:g} min, a curve point every {eval_every}"
    )
    scorer = HeldoutScorer(model, heldout, settings.batch_size, bootstrap_samples)
    curve = [{"step": 0, "seconds": 0.0, **scorer.score()}]
    clock = _clock(budget_s, max_steps)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pretrain-gain-") as checkpoints:
        pretrain(
            model,
            batches.batches,
            total_steps=math.ceil(max_steps / eval_every) * eval_every,
            checkpoint_dir=checkpoints,
            steps_per_checkpoint=eval_every,
            callbacks=[clock, _curve(scorer, clock, curve)],
            verbose=0,
        )
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    record = {
        "budget_minutes": minutes,
        "steps_planned": max_steps,
        "steps": steps,
        "training_seconds": round(clock.seconds, 1),
        "first_step_seconds": round(clock.first_step_seconds, 1),
        "eval_seconds": round(clock.eval_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "calibration": {"first_step_seconds": round(first_step_s, 2), "step_seconds": round(step_s, 4)},
        "batch_size": settings.batch_size,
        "peak_learning_rate": settings.peak_learning_rate,
        "warmup_steps": warmup,
        "eval_every": eval_every,
        "heldout_instances": scorer.instances,
        "heldout_sop_majority": round(scorer.sop_majority, 4),
        "curve": curve,
    }
    return model, record


# -- 4. outputs --------------------------------------------------------------------------------------


def save_sharded_weights(
    model: Any, folder: str | Path, max_file_bytes: int = MAX_WEIGHT_FILE_BYTES
) -> list[Path]:
    """The model's weights as Keras's sharded `.weights.json` index and `.weights.h5` parts, no file over
    `max_file_bytes`. Keras caps the values per part; HDF5 adds headers, so the cap is lowered until
    every file fits. Returns the files written."""
    folder = Path(folder)
    target = 0.98 * max_file_bytes
    for _ in range(6):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        model.save_weights(folder / WEIGHTS_INDEX, max_shard_size=target / 1024**3)
        files = sorted(folder.iterdir())
        largest = max(f.stat().st_size for f in files)
        if largest <= max_file_bytes:
            return files
        target *= 0.9 * max_file_bytes / largest
    raise ValueError(f"could not write weight files of at most {max_file_bytes} bytes")


def load_sharded_pretrainer(out: str | Path) -> Any:
    """An AlbertPretrainer rebuilt from OUT/albert_config.json and OUT/weights/ (no optimizer)."""
    from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer

    out = Path(out)
    model = AlbertPretrainer(AlbertBackbone(AlbertConfig.from_json_file(str(out / CONFIG_FILE))))
    model.load_weights(out / WEIGHTS_DIR / WEIGHTS_INDEX)
    return model


def save_outputs(model: Any, config: Any, out: Path) -> list[dict[str, Any]]:
    """pretrainer.keras, albert_config.json and weights/, from a copy of the model without optimizer
    state (what `--init` needs, a third of the size); returns each file's name and bytes."""
    from albert_keras import AlbertBackbone, AlbertPretrainer

    portable = AlbertPretrainer(AlbertBackbone(config))
    portable.set_weights(model.get_weights())
    portable.save(out / MODEL_FILE)
    (out / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    files = [out / MODEL_FILE, out / CONFIG_FILE, *save_sharded_weights(portable, out / WEIGHTS_DIR)]
    return [{"file": str(f.relative_to(out)), "bytes": f.stat().st_size} for f in files]


# -- 5. the rows -------------------------------------------------------------------------------------


def _subset(values: Any, indices: np.ndarray) -> Any:
    return values[indices] if isinstance(values, np.ndarray) else [values[i] for i in indices]


def paired_difference(
    kind: str, gold: Any, scratch: Any, init: Any, num_labels: int, samples: int
) -> dict[str, dict[str, float]]:
    """init - scratch on every metric, with a 95% paired bootstrap interval: both rows scored on the same
    resampled test units (seed 0, as every row's own interval)."""
    gold = np.asarray(gold) if kind != "entities" else gold
    scratch = np.asarray(scratch) if kind != "entities" else scratch
    init = np.asarray(init) if kind != "entities" else init
    names = metrics.METRICS[kind]

    def statistic(indices: np.ndarray) -> list[float]:
        truth = _subset(gold, indices)
        ours = metrics.point_scores(kind, truth, _subset(init, indices), num_labels)
        theirs = metrics.point_scores(kind, truth, _subset(scratch, indices), num_labels)
        return [ours[m] - theirs[m] for m in names]

    values = statistic(np.arange(len(gold)))
    low, high = scores.bootstrap(len(gold), statistic, samples=samples, seed=0)
    return {
        name: {"value": float(values[i]), "low": float(low[i]), "high": float(high[i])}
        for i, name in enumerate(names)
    }


def run_rows(
    data: str, budget_name: str, task_names: Sequence[str], init_path: Path
) -> tuple[dict[str, Any], int]:
    """albert_scratch and albert_init on each task (quality.py's rows, its budget); the report's tasks
    and the number of rows that failed."""
    from bench.quality_albert import InitCheckpoint, Tokenizer, run_albert

    chosen = quality.budget(budget_name)
    sources = find_sources(data)
    needed = set(task_names) | {quality.TOKENIZER_CORPUS[name] for name in task_names}
    all_tasks = {name: task.capped(chosen.caps) for name, task in load_tasks(sources, needed).items()}
    init = InitCheckpoint(str(init_path))
    init_tokenizer = init.load_tokenizer()
    tokenizers: dict[str, Any] = {}
    encoded: dict = {}
    failures = 0
    report: dict[str, Any] = {}
    for name in task_names:
        task = all_tasks[name]
        _log(f"[{name}] {task.counts()} {quality.UNITS[name]}")
        rows: dict[str, Any] = {}
        answers: dict[str, Any] = {}
        for row in ROWS:
            try:
                started = time.perf_counter()
                if row == "albert_init":
                    predictions = run_albert(
                        task, init_tokenizer, chosen.albert, init=init, encoded_cache=encoded
                    )
                else:
                    corpus = quality.TOKENIZER_CORPUS[name]
                    if corpus not in tokenizers:
                        texts = quality.tokenizer_texts(all_tasks[corpus])
                        tokenizers[corpus] = Tokenizer.train(texts, chosen.albert.vocab_size)
                        tokenizers[corpus].origin = f"trained on {corpus} train"
                    predictions = run_albert(task, tokenizers[corpus], chosen.albert, encoded_cache=encoded)
            except Exception as error:
                traceback.print_exc(limit=3, file=sys.stderr)
                failures += 1
                rows[row] = {"status": f"failed: {type(error).__name__}: {str(error)[:200]}"}
                continue
            answers[row] = predictions.test
            rows[row] = {
                "status": "ok",
                "metrics": metrics.scored(
                    task.kind,
                    metrics.gold_of(task, "test"),
                    predictions.test,
                    len(task.label_names),
                    chosen.bootstrap_samples,
                ),
                "eval": metrics.point_scores(
                    task.kind, metrics.gold_of(task, "eval"), predictions.eval, len(task.label_names)
                ),
                "wall_s": round(time.perf_counter() - started, 1),
                "details": predictions.details,
            }
            _log(f"[{name}] {row}: ok {rows[row]['wall_s']} s")
        difference = None
        if len(answers) == len(ROWS):
            difference = paired_difference(
                task.kind,
                metrics.gold_of(task, "test"),
                answers["albert_scratch"],
                answers["albert_init"],
                len(task.label_names),
                chosen.bootstrap_samples,
            )
        report[name] = {
            "title": quality.TITLES[name],
            "kind": task.kind,
            "metrics": list(metrics.METRICS[task.kind]),
            "units": {"name": quality.UNITS[name], **task.counts()},
            "source": task.source,
            "bundled": task.bundled,
            "rows": rows,
            "init_minus_scratch": difference,
        }
    return report, failures


# -- 6. report ---------------------------------------------------------------------------------------


def _cell(figure: dict[str, float], signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{figure['value']:{sign}.3f} [{figure['low']:{sign}.3f}, {figure['high']:{sign}.3f}]"


def format_report(report: dict[str, Any]) -> str:
    """The printed tables: header, one table per task, then the pretraining curve."""
    corpus, pretraining, model = report["corpus"], report["pretraining"], report["model"]
    lines = [
        f"Pretraining gain, budget {report['budget']}, Keras backend {report['keras_backend']}; 95% "
        f"bootstrap intervals ({report['bootstrap_samples']} resamples): rows over test units, init - "
        "scratch paired over the same units, the curve over held-out instances",
    ]
    bundled, missing = (
        corpus["manifest"]["data"]["bundled_samples_for"],
        corpus["manifest"]["data"]["missing"],
    )
    if bundled or missing:
        lines.append(
            f"DATA: {report['data']} lacks {', '.join(bundled + missing)}: bundled samples stand in for "
            f"{', '.join(bundled) or 'none'}, left out: {', '.join(missing) or 'none'}; not the full corpus"
        )
    else:
        lines.append(f"data: {report['data']} (full public data)")
    sources = ", ".join(
        f"{name} {s['documents']} docs / {s['characters']} chars"
        for name, s in corpus["manifest"]["sources"].items()
    )
    lines += [
        f"corpus: {sources}; {corpus['train_documents']} documents trained on, {corpus['heldout_documents']} "
        f"held out; excluded: {corpus['manifest']['total']['excluded']}",
        f"vocabulary: {report['tokenizer']['vocab_size']} pieces; model: E {model['embedding_size']}, "
        f"H {model['hidden_size']}, {model['num_hidden_layers']} layers, {model['parameters']} parameters, "
        f"{model['max_position_embeddings']} positions; {pretraining['precision_policy']}",
        f"pretraining: {pretraining['steps']} steps of {pretraining['batch_size']} x "
        f"{pretraining['seq_length']} in {pretraining['training_seconds']} s "
        f"(budget {pretraining['budget_minutes']:g} min, "
        f"{pretraining['steps_planned']} planned), {pretraining['train_instances']} instances a masking pass",
    ]
    for name, task in report["tasks"].items():
        names = task["metrics"]
        units = task["units"]
        lines += [
            "",
            f"== {name}: {task['title']}",
            f"   {task['source']}; {units['train']}/{units['eval']}/{units['test']} train/eval/test "
            f"{units['name']}",
            f"   {'row':<17}" + "".join(f"{m:<28}" for m in names) + f"{'eval ' + names[0]:<20}{'wall':>8}",
        ]
        for row, result in task["rows"].items():
            if result["status"] != "ok":
                lines.append(f"   {row:<17}{result['status']}")
                continue
            cells = "".join(f"{_cell(result['metrics'][m]):<28}" for m in names)
            lines.append(f"   {row:<17}{cells}{result['eval'][names[0]]:<20.3f}{result['wall_s']:>7.1f}s")
        difference = task["init_minus_scratch"]
        if difference is not None:
            cells = "".join(f"{_cell(difference[m], signed=True):<28}" for m in names)
            lines.append(f"   {'init - scratch':<17}{cells}")
    if report.get("rows_skipped"):
        lines += [
            "",
            f"rows: not run (--skip-rows); run them from the saved model with bench/pretrain_gain.py "
            f"--rows-only --budget {report['budget']} --init <this run's --out> --out DIR",
        ]
    lines += [
        "",
        f"== pretraining curve: held-out MLM and SOP accuracy, loss ({pretraining['heldout_instances']} "
        f"instances of documents never trained on; the majority SOP label's share is "
        f"{pretraining['heldout_sop_majority']:.3f})",
        f"   {'step':>6}{'seconds':>9}   {'mlm_accuracy':<26}{'sop_accuracy':<26}{'loss':<26}",
    ]
    for point in pretraining["curve"]:
        cells = "".join(f"{_cell(point[m]):<26}" for m in ("mlm_accuracy", "sop_accuracy", "loss"))
        lines.append(f"   {point['step']:>6}{point['seconds']:>9.1f}   {cells}")
    files = ", ".join(f"{w['file']} {w['bytes']}" for w in report["weights"])
    lines += ["", f"saved (bytes): {files}", f"total wall time {report['wall_s']:.0f} s"]
    if "rows_run" in report:
        rows_run = report["rows_run"]
        lines.append(
            f"rows run apart (--rows-only), Keras backend {rows_run['keras_backend']}, in "
            f"{rows_run['wall_s']:.0f} s"
        )
    return "\n".join(lines)


# -- stages: prepared inputs, pretraining, rows later -----------------------------------------------


@dataclasses.dataclass
class PretrainingInputs:
    """What pretraining needs from stages 1 and 2: the train and held-out documents tokenized (each a
    list of sentences of piece ids), the SentencePiece model, and the records the report prints."""

    budget: str
    data: str
    corpus: dict[str, Any]
    tokenizer: dict[str, Any]
    model_proto: bytes
    train: list[list[list[int]]]
    heldout: list[list[list[int]]]


def build_inputs(
    data: str, budget_name: str, settings: PretrainSettings, out: Path, text_dir: Path
) -> PretrainingInputs:
    """Stages 1 and 2: the corpus (text and manifest into `text_dir`), the vocabulary trained on its
    train documents (spm.model into `out`), and both document sets tokenized with it."""
    albert = quality.budget(budget_name).albert
    text_dir.mkdir(parents=True, exist_ok=True)
    corpus = corpus_lib.build_corpus(data)
    documents = select_documents(corpus.documents, settings.max_documents)
    train_docs, heldout_docs = heldout_split(documents)
    if not heldout_docs:
        raise ValueError(f"no held-out document among {len(documents)}: raise --max-documents")
    (text_dir / corpus_lib.MANIFEST_FILE).write_text(json.dumps(corpus.manifest, indent=1) + "\n")
    sentences = corpus_lib.write_text(train_docs, text_dir / TRAIN_TEXT)
    corpus_lib.write_text(heldout_docs, text_dir / HELDOUT_TEXT)
    _log(
        f"corpus: {len(train_docs)} documents ({sentences} sentences) to train on, "
        f"{len(heldout_docs)} held out"
    )

    import sentencepiece as spm

    from albert_keras.pretraining_data import read_documents
    from components.sentencepiece_tokenizer.train import train_sentencepiece

    with open(text_dir / TRAIN_TEXT, encoding="utf-8") as f:
        tokenizer = train_sentencepiece(
            f, out, vocab_size=albert.vocab_size, seed=settings.seed, vocab_size_fit="lower"
        )
    _log(f"vocabulary: {tokenizer.stats['vocab_size']} pieces")
    model_proto = tokenizer.model_path.read_bytes()
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    return PretrainingInputs(
        budget=budget_name,
        data=data,
        corpus={
            "manifest": corpus.manifest,
            "selected_documents": len(documents),
            "train_documents": len(train_docs),
            "heldout_documents": len(heldout_docs),
            "train_sentences": sentences,
        },
        tokenizer=tokenizer.stats,
        model_proto=model_proto,
        train=list(read_documents([str(text_dir / TRAIN_TEXT)], processor)),
        heldout=list(read_documents([str(text_dir / HELDOUT_TEXT)], processor)),
    )


def pack_documents(documents: Sequence[Sequence[Sequence[int]]]) -> dict[str, np.ndarray]:
    """Documents as three flat arrays: every id in order, each sentence's length, each document's
    number of sentences. `unpack_documents` undoes it."""
    lengths = [len(sentence) for document in documents for sentence in document]
    ids = itertools.chain.from_iterable(itertools.chain.from_iterable(documents))
    return {
        "ids": np.fromiter(ids, np.int32, sum(lengths)),
        "sentence_lengths": np.asarray(lengths, np.int32),
        "document_sentences": np.asarray([len(document) for document in documents], np.int32),
    }


def unpack_documents(
    ids: np.ndarray, sentence_lengths: np.ndarray, document_sentences: np.ndarray
) -> list[list[list[int]]]:
    """The documents `pack_documents` packed, as Python lists of ints (what `read_documents` gives)."""
    flat = ids.tolist()
    ends = np.cumsum(sentence_lengths).tolist()
    sentences = [flat[end - n : end] for n, end in zip(sentence_lengths.tolist(), ends, strict=True)]
    bounds = np.cumsum(document_sentences).tolist()
    return [sentences[end - n : end] for n, end in zip(document_sentences.tolist(), bounds, strict=True)]


def save_prepared(
    inputs: PretrainingInputs, settings: PretrainSettings, folder: Path
) -> list[dict[str, Any]]:
    """Writes what `load_prepared` reads: tokens.npz (the documents packed, ids in int16 below 32768
    pieces, compressed), spm.model and prepared.json (budget, settings, corpus and tokenizer records).
    Returns each file's name and bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    id_type = np.int16 if inputs.tokenizer["vocab_size"] < 2**15 else np.int32
    arrays = {
        f"{split}_{name}": values.astype(id_type) if name == "ids" else values
        for split in ("train", "heldout")
        for name, values in pack_documents(getattr(inputs, split)).items()
    }
    np.savez_compressed(folder / TOKENS_FILE, **arrays)
    (folder / SPM_FILE).write_bytes(inputs.model_proto)
    record = {
        "format": PREPARED_FORMAT,
        "budget": inputs.budget,
        "data": inputs.data,
        "settings": dataclasses.asdict(settings),
        "corpus": inputs.corpus,
        "tokenizer": inputs.tokenizer,
    }
    (folder / PREPARED_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    files = [folder / name for name in (TOKENS_FILE, SPM_FILE, PREPARED_FILE)]
    return [{"file": f.name, "bytes": f.stat().st_size} for f in files]


def load_prepared(folder: Path, budget_name: str) -> PretrainingInputs:
    """What `--prepare-only` wrote into `folder`, for the budget it was written for."""
    record = json.loads((folder / PREPARED_FILE).read_text(encoding="utf-8"))
    if record["format"] != PREPARED_FORMAT:
        raise ValueError(
            f"{folder.name}/{PREPARED_FILE} has format {record['format']}, not {PREPARED_FORMAT}"
        )
    if record["budget"] != budget_name:
        raise ValueError(
            f"{folder.name} was prepared for budget {record['budget']!r}, received --budget {budget_name!r}"
        )
    with np.load(folder / TOKENS_FILE) as arrays:
        documents = {
            split: unpack_documents(
                arrays[f"{split}_ids"],
                arrays[f"{split}_sentence_lengths"],
                arrays[f"{split}_document_sentences"],
            )
            for split in ("train", "heldout")
        }
    _log(
        f"prepared inputs: {len(documents['train'])} documents to train on, {len(documents['heldout'])} "
        f"held out, {record['tokenizer']['vocab_size']} pieces"
    )
    return PretrainingInputs(
        budget=record["budget"],
        data=record["data"],
        corpus=record["corpus"],
        tokenizer=record["tokenizer"],
        model_proto=(folder / SPM_FILE).read_bytes(),
        train=documents["train"],
        heldout=documents["heldout"],
    )


def pretrain_stage(
    inputs: PretrainingInputs, settings: PretrainSettings, minutes: float, bootstrap_samples: int
) -> tuple[Any, Any, dict[str, Any]]:
    """Stage 3: instances (masked in worker processes off the smoke budget) and pretraining; the model,
    its AlbertConfig and the run's record."""
    from albert_keras.pretraining_data import MaskingConfig
    from bench.quality_albert import scratch_config
    from components.sentencepiece_tokenizer.train import vocabulary

    albert = quality.budget(inputs.budget).albert
    vocab = vocabulary(inputs.model_proto)
    positions = max(albert.seq_length.values())
    config = scratch_config(albert, len(vocab.pieces), positions)
    seq_length = config.max_position_embeddings
    masking = MaskingConfig(
        max_seq_length=seq_length, max_predictions_per_seq=round(seq_length * MASKED_LM_PROB)
    )
    workers = 1 if inputs.budget == "smoke" else max(1, os.cpu_count() or 1)
    instances_started = time.perf_counter()
    seeds = [settings.seed + p for p in range(settings.mask_passes)]
    passes = make_passes(inputs.train, vocab, masking, seeds, workers)
    (heldout,) = make_passes(inputs.heldout, vocab, masking, [settings.seed + 10_000], 1)
    heldout = {k: v[: settings.eval_instances] for k, v in heldout.items()}
    instance_seconds = time.perf_counter() - instances_started
    _log(
        f"instances: {len(passes[0]['token_ids'])} a pass x {len(passes)} passes in {instance_seconds:.0f} s"
    )

    policy = _set_precision(albert.mixed_precision)
    model, record = pretrain_model(config, passes, heldout, settings, minutes, bootstrap_samples)
    record |= {
        "seq_length": seq_length,
        "max_predictions_per_seq": masking.max_predictions_per_seq,
        "mask_passes": len(passes),
        "train_instances": len(passes[0]["token_ids"]),
        "instance_seconds": round(instance_seconds, 1),
        "precision_policy": policy,
    }
    return model, config, record


def init_model(init: Path, out: Path) -> Path:
    """The pretrained model file for the albert_init row: INIT/pretrainer.keras where it was kept, else
    rebuilt from INIT/albert_config.json and INIT/weights/ into OUT, with spm.model copied beside it."""
    if (init / MODEL_FILE).is_file():
        return init / MODEL_FILE
    out.mkdir(parents=True, exist_ok=True)
    load_sharded_pretrainer(init).save(out / MODEL_FILE)
    if init.resolve() != out.resolve():
        shutil.copyfile(init / SPM_FILE, out / SPM_FILE)
    _log(f"rebuilt {MODEL_FILE} from {WEIGHTS_DIR}/")
    return out / MODEL_FILE


def complete_rows(args: argparse.Namespace) -> dict[str, Any]:
    """`--rows-only`: the rows of a `--skip-rows` run, from its folder (`--init`: its report, spm.model
    and saved weights), added to its report; no pretraining again."""
    import keras

    started = time.perf_counter()
    init = Path(args.init)
    report = json.loads((init / REPORT_FILE).read_text(encoding="utf-8"))
    if report["budget"] != args.budget:
        raise ValueError(f"{init.name} was pretrained at budget {report['budget']!r}, not {args.budget!r}")
    model_path = init_model(init, Path(args.out))
    task_names = [t for t in TASKS if t in args.tasks]
    tasks, failures = run_rows(args.data, args.budget, task_names, model_path)
    report |= {
        "tasks": tasks,
        "failures": failures,
        "rows_skipped": False,
        "rows_run": {
            "data": args.data,
            "keras_backend": keras.backend.backend(),
            "wall_s": round(time.perf_counter() - started, 1),
        },
    }
    return report


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """`--prepare-only`: stages 1 and 2 into `--out` (tokens.npz, spm.model, prepared.json; the corpus
    text and the tokenizer's other files stay in a temporary folder), for a later `--from-prepared`."""
    settings = budget_settings(args)
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="pretrain-gain-prepare-") as scratch:
        inputs = build_inputs(args.data, args.budget, settings, Path(scratch), Path(scratch) / CORPUS_DIR)
    files = save_prepared(inputs, settings, out)
    return {"budget": args.budget, "corpus": inputs.corpus, "tokenizer": inputs.tokenizer, "files": files}


def format_prepared(summary: dict[str, Any]) -> str:
    corpus = summary["corpus"]
    files = ", ".join(f"{f['file']} {f['bytes']:,}" for f in summary["files"])
    total = sum(f["bytes"] for f in summary["files"])
    return "\n".join(
        [
            f"prepared for budget {summary['budget']}: {corpus['train_documents']} documents to train on, "
            f"{corpus['heldout_documents']} held out, {summary['tokenizer']['vocab_size']} pieces",
            f"files (bytes): {files}; total {total:,} ({total / 2**20:.1f} MiB)",
        ]
    )


# -- the run -----------------------------------------------------------------------------------------


def budget_settings(args: argparse.Namespace) -> PretrainSettings:
    settings = PRETRAIN[args.budget]
    if args.max_documents is not None:
        settings = dataclasses.replace(settings, max_documents=args.max_documents or None)
    return settings


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Stages 1 to 6 (1 and 2 read from `--from-prepared` where given; 5 left out by `--skip-rows`)."""
    started = time.perf_counter()
    settings = budget_settings(args)
    minutes = settings.minutes if args.minutes is None else args.minutes
    bootstrap_samples = quality.budget(args.budget).bootstrap_samples
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1./2. corpus and vocabulary
    if args.from_prepared:
        inputs = load_prepared(Path(args.from_prepared), args.budget)
        (out / SPM_FILE).write_bytes(inputs.model_proto)
    else:
        inputs = build_inputs(args.data, args.budget, settings, out, out / CORPUS_DIR)

    # 3. instances and pretraining
    import keras

    model, config, record = pretrain_stage(inputs, settings, minutes, bootstrap_samples)

    # 4. outputs
    weights = save_outputs(model, config, out)
    parameters = int(model.count_params())
    keras.mixed_precision.set_global_policy("float32")

    # 5. rows
    tasks, failures = {}, 0
    if not args.skip_rows:
        task_names = [t for t in TASKS if t in args.tasks]
        tasks, failures = run_rows(args.data, args.budget, task_names, out / MODEL_FILE)
    return {
        "budget": args.budget,
        "keras_backend": keras.backend.backend(),
        "data": inputs.data,
        "bootstrap_samples": bootstrap_samples,
        "corpus": inputs.corpus,
        "tokenizer": inputs.tokenizer,
        "model": {**config.to_dict(), "parameters": parameters},
        "pretraining": record,
        "weights": weights,
        "tasks": tasks,
        "rows_skipped": bool(args.skip_rows),
        "failures": failures,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=tuple(PRETRAIN), default="smoke")
    parser.add_argument("--minutes", type=float, help="pretraining time (default: the budget's)")
    parser.add_argument(
        "--data", default=quality.DEFAULT_DATA, help="the shared data folder (default %(default)s)"
    )
    parser.add_argument("--out", required=True, help="folder for the corpus, tokenizer and model")
    parser.add_argument("--json", help="the report as JSON (default OUT/pretrain_gain.json)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument(
        "--max-documents", type=int, help="corpus documents kept, by id hash (default: the budget's; 0: all)"
    )
    stages = parser.add_argument_group("stages (module docstring)")
    stages.add_argument("--prepare-only", action="store_true", help="write the inputs into OUT and stop")
    stages.add_argument("--from-prepared", metavar="DIR", help="read the inputs --prepare-only wrote")
    stages.add_argument("--skip-rows", action="store_true", help="pretrain and save, no fine-tuning rows")
    stages.add_argument("--rows-only", action="store_true", help="the rows of a --skip-rows run (--init)")
    stages.add_argument("--init", metavar="DIR", help="with --rows-only: the --skip-rows run's OUT")
    args = parser.parse_args(argv)
    if args.prepare_only and (args.from_prepared or args.skip_rows or args.rows_only):
        parser.error("--prepare-only stops before pretraining: no --from-prepared, --skip-rows, --rows-only")
    if args.rows_only and (args.from_prepared or args.skip_rows):
        parser.error("--rows-only pretrains nothing: no --from-prepared or --skip-rows")
    if bool(args.rows_only) != bool(args.init):
        parser.error("--rows-only and --init go together")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare_only:
        print(format_prepared(prepare(args)))
        return 0
    needs_data = not args.from_prepared or not args.skip_rows
    if needs_data and not Path(args.data).is_dir():
        print(f"{args.data} is missing: the bundled samples in data/sample stand in for it", file=sys.stderr)
    report = complete_rows(args) if args.rows_only else run(args)
    print(format_report(report))
    path = Path(args.json) if args.json else Path(args.out) / REPORT_FILE
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
