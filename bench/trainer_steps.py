"""The pretraining Trainer's own training step, per Keras backend: `components.trainer.pretrain.train`,
the function both the pipeline's Trainer and its JAX child call, on Parquet shards.

Each (backend, shape) runs in its own child process (`components/trainer/child.py`, KERAS_BACKEND set)
on shards of full-length synthetic instances (random ids, no padding, the masked positions spread
over the sequence, as bench/train_throughput.py feeds the library step). The Trainer's `StepTimer`
gives the median step after the first two (compilation excluded); the input pipeline, LAMB and the
Trainer's callbacks are inside it. `wall` is the child's whole run (start-up, compilation, one
checkpoint at the end) for scale.

    .venv/bin/python bench/trainer_steps.py --preset tiny --shape 8x128                  # CPU, both
    .venv/bin/python bench/trainer_steps.py --preset base --shape 8x128 --steps 12
    python3 bench/trainer_steps.py --backend jax --preset base --shape 64x512 --shape 128x128 \\
        --shards DIR --json OUT.json                                        # one GPU (device_check.sh)
    .venv/bin/python bench/trainer_steps.py --write-shards DIR --shape 64x512 --shape 128x128

`--write-shards DIR` only writes the shards (one folder per shape) for a later run with `--shards`:
the GPU check takes shards made on CPU beforehand. Masked positions per sequence: 15% of the length,
as the pipeline's max_predictions (20 at 128, 77 at 512).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from albert_keras.pretraining_data import Instance  # noqa: E402
from albert_keras.pretraining_shards import write_shard  # noqa: E402
from components.trainer import child  # noqa: E402

VOCAB_SIZE = 30_000
#: Instances per shape: enough batches that the timed steps never wait on a repeated window.
INSTANCES = 2_048


def parse_shape(text: str) -> tuple[int, int]:
    batch, _, seq = text.lower().partition("x")
    if not batch.isdigit() or not seq.isdigit():
        raise argparse.ArgumentTypeError(f"a shape is BATCHxSEQ, received {text!r}")
    return int(batch), int(seq)


def max_predictions(seq: int) -> int:
    return max(1, round(seq * 0.15))


def synthetic_instances(seq: int, count: int, seed: int = 0):
    """Full-length instances: [CLS] A [SEP] B [SEP] of random ids, 15% of positions masked."""
    rng = np.random.default_rng(seed)
    preds = max_predictions(seq)
    for index in range(count):
        tokens = rng.integers(5, VOCAB_SIZE, seq).astype(np.int32)
        tokens[0], tokens[seq // 2], tokens[-1] = 2, 3, 3
        positions = np.sort(rng.choice(np.arange(1, seq - 1), preds, replace=False)).astype(np.int32)
        yield Instance(
            document_key=index,
            index=0,
            tokens=tokens,
            a_length=seq // 2 + 1,
            positions=positions,
            labels=rng.integers(5, VOCAB_SIZE, preds).astype(np.int32),
            sop_label=int(rng.integers(0, 2)),
        )


def write_shards(folder: Path, seq: int, count: int = INSTANCES) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-00000.parquet"
    write_shard(synthetic_instances(seq, count), str(path), seq, max_predictions(seq))
    return [str(path)]


def shard_folder(root: Path, seq: int) -> Path:
    return root / f"seq{seq}"


def measure(backend: str, preset: str, batch: int, seq: int, steps: int, shards: list[str]) -> dict:
    """The Trainer's `train` for `steps` steps in a child under `backend`; its step timing."""
    with tempfile.TemporaryDirectory(prefix="trainer-steps-") as work:
        job = {
            "train_files": shards,
            "eval_files": [],
            "vocab_size": VOCAB_SIZE,
            "preset": preset,
            "seq_length": seq,
            "max_predictions": max_predictions(seq),
            "batch_size": batch,
            "learning_rate": 1e-4,
            "steps": steps,
            "checkpoints": 1,
            "seed": 0,
            "init_checkpoint": "",
            "base_model": None,
            "checkpoint_dir": os.path.join(work, "checkpoints"),
            "model_file": os.path.join(work, "pretrainer.keras"),
            "logs": os.path.join(work, "logs"),
        }
        start = time.perf_counter()
        result = child.run_child(
            "components.trainer.pretrain:train", job, os.path.join(work, "child"), backend
        )
        wall = time.perf_counter() - start
    timing = result["timing"]
    return {
        "backend": backend,
        "preset": preset,
        "batch": batch,
        "seq": seq,
        "precision": result["precision"],
        "steps": steps,
        "steps_timed": timing.get("steps_timed", 0),
        "seconds_per_step": timing.get("seconds_per_step"),
        "steps_per_second": 1 / timing["seconds_per_step"] if timing.get("seconds_per_step") else None,
        "sequences_per_second": timing.get("sequences_per_second"),
        "wall_seconds": wall,
    }


def print_table(rows: list[dict]) -> None:
    header = ("backend", "preset", "batch x seq", "precision", "steps/s", "seq/s", "wall s")
    print("{:<11} {:<7} {:>11} {:<15} {:>8} {:>9} {:>7}".format(*header))
    for row in rows:
        shape = f"{row['batch']} x {row['seq']}"
        rate = f"{row['steps_per_second']:.3f}" if row["steps_per_second"] else "-"
        sequences = f"{row['sequences_per_second']:,.1f}" if row["sequences_per_second"] else "-"
        print(
            f"{row['backend']:<11} {row['preset']:<7} {shape:>11} {row['precision']:<15} {rate:>8} "
            f"{sequences:>9} {row['wall_seconds']:>7.1f}"
        )
    by_key = {(r["preset"], r["batch"], r["seq"], r["backend"]): r for r in rows}
    for (preset, batch, seq, backend), row in sorted(by_key.items()):
        other = by_key.get((preset, batch, seq, "tensorflow"))
        if backend == "jax" and other and row["steps_per_second"] and other["steps_per_second"]:
            ratio = row["steps_per_second"] / other["steps_per_second"]
            print(f"{preset} {batch} x {seq}: jax / tensorflow = {ratio:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", action="append", choices=("tensorflow", "jax"), help="repeatable")
    parser.add_argument("--preset", action="append", help="repeatable; default tiny")
    parser.add_argument("--shape", action="append", type=parse_shape, help="BATCHxSEQ; repeatable")
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement")
    parser.add_argument("--shards", help="read shards from DIR/seq<SEQ>/ (made with --write-shards)")
    parser.add_argument("--write-shards", help="only write shards for the shapes into DIR")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    shapes = args.shape or [(8, 128)]
    if args.write_shards:
        for seq in sorted({seq for _, seq in shapes}):
            files = write_shards(shard_folder(Path(args.write_shards), seq), seq)
            print(f"wrote {INSTANCES} instances of length {seq}: {', '.join(files)}")
        return 0
    backends = args.backend or (["tensorflow", "jax"] if child.jax_installed() else ["tensorflow"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainer-shards-") as made:
        root = Path(args.shards) if args.shards else Path(made)
        for preset in args.preset or ["tiny"]:
            for batch, seq in shapes:
                folder = shard_folder(root, seq)
                files = sorted(str(p) for p in folder.glob("*.parquet")) or write_shards(folder, seq)
                for backend in backends:
                    rows.append(measure(backend, preset, batch, seq, args.steps, files))
                    print_table(rows[-1:])
    print()
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
