"""Pretraining input throughput on this machine's CPUs: the Parquet shard reader, and the old path.

    shard reader  `ShardReader.batches()` (albert_keras/pretraining_shards.py) over Parquet shards:
                  sequences/s consumed for --seconds after --warmup seconds, shuffled with the default
                  window, at seq 128 (batch 128, 20 predictions) and seq 512 (batch 64, 77). Goals:
                  20,000 and 5,000 sequences/s, four times what one H100 step consumes (4,845 and
                  1,173, bench/RESULTS.md), so one reader keeps up with several GPUs or a busy host.
    Beam step     the PretrainingExamples step's `MakeInstances` + `WriteToParquet` on the DirectRunner
                  with one worker: instances/s per core over all the documents, start-up included.
    old path      `pretraining_data.tf_dataset`: a Python generator behind tf.data that pairs and
                  masks on the fly, batched the same way; instances/s on the same documents.

The data are made up, so the script needs none: documents of sentences of random ids (lognormal
lengths, median 20 pieces) over a vocabulary of made-up pieces (`Vocabulary.from_pieces`), turned
into instances by `document_instances` and written by `write_shard` into a temporary folder. Masking
in Python makes about 1,600 instances/s at seq 128 (600 at 512), so the distinct instances are written
several times, each shard holding all of them in another order, until the shards hold 1.5 shuffle
windows: a timed read then crosses windows. The reader's speed depends on row lengths, not on whether
rows repeat across files. Also printed for the reader: the instances and shards it read and its
longest wait for one batch (a window being read).

    .venv/bin/python bench/input_pipeline.py [--seconds 10] [--warmup 2] [--json OUT.json]

`main` runs a list of measurements, each a function of the shared `Bench` returning one result row;
another measurement is one more entry there.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from albert_keras.pretraining_data import (
    WORD_START,
    MaskingConfig,
    Vocabulary,
    document_instances,
    document_key,
    random_pool,
    tf_dataset,
)
from albert_keras.pretraining_shards import SHUFFLE_WINDOW, ShardReader, schema, shard_info, write_shard


@dataclasses.dataclass(frozen=True)
class Shape:
    """A training shape, the reader's goal there, and what one H100 step consumes (bench/RESULTS.md)."""

    seq: int
    batch: int
    max_predictions: int
    goal: float  # sequences/s
    h100_step: float  # sequences/s

    def masking(self) -> MaskingConfig:
        return MaskingConfig(max_seq_length=self.seq, max_predictions_per_seq=self.max_predictions)


SHAPES = (Shape(128, 128, 20, 20_000, 4_845), Shape(512, 64, 77, 5_000, 1_173))


def synthetic_vocabulary(word_pieces: int = 20_000, continuations: int = 10_000) -> Vocabulary:
    """Specials, punctuation, word-start pieces ("▁w17") and continuation pieces ("x9")."""
    pieces = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", ".", ",", ":", "(", ")"]
    pieces += [f"{WORD_START}w{i}" for i in range(word_pieces)] + [f"x{i}" for i in range(continuations)]
    return Vocabulary.from_pieces(pieces)


def synthetic_documents(count: int, vocab: Vocabulary, seed: int = 0) -> list[list[list[int]]]:
    """Documents of 5-60 sentences; sentence lengths lognormal around 20 pieces (3 to 120), ids drawn
    uniformly from the non-special pieces (two in three begin a word)."""
    rng = np.random.default_rng(seed)
    first = max((*vocab.control_ids, vocab.cls_id, vocab.sep_id, vocab.mask_id)) + 1
    documents = []
    for _ in range(count):
        lengths = np.clip(rng.lognormal(np.log(20), 0.5, size=rng.integers(5, 61)), 3, 120).astype(int)
        documents.append([rng.integers(first, len(vocab.pieces), size=n).tolist() for n in lengths])
    return documents


@dataclasses.dataclass
class Bench:
    """What the measurements share: the documents, a folder for shards, and the time budget."""

    documents: list[list[list[int]]]
    vocab: Vocabulary
    folder: Path
    seconds: float
    warmup: float
    shuffle_window: int = SHUFFLE_WINDOW
    seed: int = 0
    _shards: dict[int, tuple[list[str], int]] = dataclasses.field(default_factory=dict)

    def shards(self, shape: Shape) -> tuple[list[str], int]:
        """Shards for `shape` (made once): (paths, distinct instances); see the module docstring."""
        if shape.seq not in self._shards:
            masking = shape.masking()
            keyed = [(document_key(d), d) for d in self.documents]
            pool = random_pool(keyed, 1000)
            distinct = [
                instance
                for key, document in keyed
                for instance in document_instances(document, key, self.vocab, masking, self.seed, pool)
            ]
            copies = math.ceil(1.5 * self.shuffle_window / len(distinct))
            rng = np.random.default_rng(self.seed)
            paths = []
            for copy in range(copies):
                path = str(self.folder / f"seq{shape.seq}-{copy:03d}.parquet")
                order = rng.permutation(len(distinct))
                write_shard((distinct[i] for i in order), path, shape.seq, shape.max_predictions)
                paths.append(path)
            self._shards[shape.seq] = (paths, len(distinct))
        return self._shards[shape.seq]


def timed_rows(batches: Iterator[tuple[dict, dict]], seconds: float, warmup: float) -> dict[str, float]:
    """Rows per second of `batches` over `seconds` after `warmup` seconds, and the longest wait for one
    batch while timed."""
    began = time.perf_counter()
    while time.perf_counter() - began < warmup:
        next(batches)
    rows, longest = 0, 0.0
    began = last = time.perf_counter()
    while last - began < seconds:
        _, y = next(batches)
        now = time.perf_counter()
        rows += len(y["sop_labels"])
        longest, last = max(longest, now - last), now
    return {"rate": rows / (last - began), "rows": rows, "longest_wait_ms": 1000 * longest}


def measure_shard_reader(bench: Bench, shape: Shape) -> dict:
    """`ShardReader.batches()` with the default shuffling, against the shape's goal."""
    paths, distinct = bench.shards(shape)
    reader = ShardReader(
        paths,
        shape.seq,
        shape.max_predictions,
        shape.batch,
        seed=bench.seed,
        shuffle_window=bench.shuffle_window,
    )
    batches = reader.batches()
    try:
        timed = timed_rows(batches, bench.seconds, bench.warmup)
    finally:
        batches.close()
    return {
        "name": "shard reader",
        "path": "new",
        "seq": shape.seq,
        "batch": shape.batch,
        "unit": "sequences/s",
        **timed,
        "goal": shape.goal,
        "ratio_to_goal": timed["rate"] / shape.goal,
        "ratio_to_h100_step": timed["rate"] / shape.h100_step,
        "instances": reader.num_instances,
        "distinct_instances": distinct,
        "shards": len(paths),
        "shuffle_window": reader.shuffle_window,
    }


def measure_generator_path(bench: Bench, shape: Shape) -> dict:
    """The old path: `tf_dataset` over the same documents (pairing and masking on the fly), batched.
    Reported as not measured where TensorFlow is not installed (the GPU training image)."""
    row = {"name": "old path: tf_dataset (generator, masks on the fly)", "path": "old", "seq": shape.seq}
    try:
        import tensorflow as tf
    except ImportError as error:
        return {**row, "error": f"not measured: {error}"}
    dataset = tf_dataset(bench.documents, bench.vocab, shape.masking(), bench.seed)
    batches = iter(dataset.repeat().batch(shape.batch).prefetch(tf.data.AUTOTUNE).as_numpy_iterator())
    timed = timed_rows(batches, bench.seconds, bench.warmup)
    return {
        **row,
        "batch": shape.batch,
        "unit": "instances/s",
        **timed,
        "documents": len(bench.documents),
    }


def measure_beam_step(bench: Bench, shape: Shape) -> dict:
    """The PretrainingExamples step's transform and sink (components/pretraining_examples):
    `MakeInstances` then `WriteToParquet`, on the DirectRunner with one worker, so the figure is per
    core; pipeline start-up and the pool's combine included. More workers (Dataflow, Flink, Spark, or
    the DirectRunner's multi-process mode) divide the wall time."""
    row = {"name": "Beam step: MakeInstances + WriteToParquet, 1 worker", "path": "beam", "seq": shape.seq}
    try:
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions

        from components.pretraining_examples.instances import MakeInstances
    except ImportError as error:  # the GPU training image has no Beam
        return {**row, "error": f"not measured: {error}"}
    documents = bench.documents
    prefix = str(bench.folder / f"beam-seq{shape.seq}")
    options = PipelineOptions(runner="DirectRunner", direct_num_workers=1, direct_running_mode="in_memory")
    began = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | "Documents" >> beam.Create(documents)
            | "Instances" >> MakeInstances(bench.vocab, shape.masking(), bench.seed)
            | "Write"
            >> beam.io.WriteToParquet(
                prefix, schema(shape.seq, shape.max_predictions), file_name_suffix=".parquet"
            )
        )
    seconds = time.perf_counter() - began
    instances = sum(shard_info(str(path))[2] for path in bench.folder.glob(f"beam-seq{shape.seq}*.parquet"))
    return {
        **row,
        "batch": "",
        "unit": "instances/s per core",
        "rate": instances / seconds,
        "notes": f"{len(documents):,} documents, {instances:,} instances in {seconds:.1f} s",
    }


Measurement = Callable[[Bench], dict]


def measurements(shapes: tuple[Shape, ...] = SHAPES) -> list[Measurement]:
    """What `main` runs, in order: the reader at each shape, the Beam step and the old path."""
    return [
        functools.partial(measure, shape=shape)
        for measure in (measure_shard_reader, measure_beam_step, measure_generator_path)
        for shape in shapes
    ]


def report(rows: list[dict]) -> str:
    """A markdown table: each figure, its goal and the ratio; the old path beside the reader."""
    reader_rates = {r["seq"]: r["rate"] for r in rows if r.get("path") == "new"}
    lines = [
        "| measurement | seq | batch | figure | goal | figure / goal | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['seq']} | | {r['error']} | | | |")
            continue
        goal = f"{r['goal']:,.0f}" if "goal" in r else ""
        ratio = f"{r['ratio_to_goal']:.2f}x" if "ratio_to_goal" in r else ""
        if r.get("path") == "new":
            notes = (
                f"{r['instances']:,} instances ({r['distinct_instances']:,} distinct) in {r['shards']} "
                f"shards; {r['rows']:,} read while timed; longest wait for a batch "
                f"{r['longest_wait_ms']:.0f} ms; {r['ratio_to_h100_step']:.1f}x one H100 step"
            )
        elif r.get("path") == "old":
            notes = f"{r['documents']:,} documents"
            if r["seq"] in reader_rates:
                notes += f"; the shard reader is {reader_rates[r['seq']] / r['rate']:,.0f}x faster"
        else:
            notes = r.get("notes", "")
        lines.append(
            f"| {r['name']} | {r['seq']} | {r['batch']} | {r['rate']:,.0f} {r['unit']} | {goal} | {ratio} "
            f"| {notes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds first")
    parser.add_argument("--documents", type=int, default=1500, help="synthetic documents")
    parser.add_argument("--shuffle-window", type=int, default=SHUFFLE_WINDOW, help="the reader's window")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    import pyarrow

    print(
        f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), load average "
        f"{os.getloadavg()[0]:.1f} at start; numpy {np.__version__}, pyarrow {pyarrow.__version__}"
    )
    vocab = synthetic_vocabulary()
    documents = synthetic_documents(args.documents, vocab)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        bench = Bench(documents, vocab, Path(folder), args.seconds, args.warmup, args.shuffle_window)
        for measure in measurements():
            began = time.perf_counter()
            row = measure(bench)
            rows.append(row)
            figure = row["error"] if "error" in row else f"{row['rate']:,.0f} {row['unit']}"
            seconds = time.perf_counter() - began
            print(f"{row['name']}, seq {row['seq']}: {figure} ({seconds:.0f} s with setup)", flush=True)
    print(report(rows))
    if args.json:
        machine = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pyarrow": pyarrow.__version__,
        }
        Path(args.json).write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
