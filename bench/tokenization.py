"""Tokenization throughput: in-graph tensorflow-text, batched, against a Python loop over sentencepiece.

Both use the same SentencePiece model (trained here on the shipped sample unless --spm-model is given)
and produce the same ids (checked). For each corpus it prints notes/s and tokens/s of: the Python loop
(`SentencePieceProcessor.encode`, one note at a time), a `tf.function` over batches of notes with the
tensorflow-text tokenizer, and the same plus ALBERT packing (what the Transform graph runs), with the
ratios to the loop. Times are the best of --repeats passes after a warm-up pass.

    .venv/bin/python bench/tokenization.py [--full PATH_TO_MTSAMPLES_CSV] [--tf-threads N]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sentencepiece as spm
import tensorflow as tf

from components.sentencepiece_tokenizer.tokenize_graph import (
    SpecialIds,
    make_tokenizer,
    tokenize,
    tokenize_and_pack,
)
from components.sentencepiece_tokenizer.train import train_sentencepiece

SAMPLE_CSV = Path(__file__).resolve().parents[1] / "data" / "sample" / "mtsamples_sample.csv"


def read_notes(path: Path) -> list[str]:
    """One transcription per MTSamples `sample_id` (a note listed under several specialties repeats)."""
    csv.field_size_limit(1 << 24)
    with open(path, newline="", encoding="utf-8") as f:
        notes = {row["sample_id"]: row["transcription"] for row in csv.DictReader(f)}
    return [note for note in notes.values() if note.strip()]


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_corpus(
    name: str, notes: list[str], model_proto: bytes, batch_size: int, repeats: int, seq: int
) -> None:
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    tokenizer = make_tokenizer(model_proto)
    special_ids = SpecialIds.from_model_proto(model_proto)
    batches = [tf.constant(notes[i : i + batch_size]) for i in range(0, len(notes), batch_size)]
    spec = [tf.TensorSpec([None], tf.string)]
    in_graph = tf.function(lambda texts: tokenize(tokenizer, texts), input_signature=spec)
    packed = tf.function(
        lambda texts: tokenize_and_pack(texts, tokenizer, special_ids, seq), input_signature=spec
    )

    python_ids = [processor.encode(note) for note in notes]
    graph_ids = [row for batch in batches for row in in_graph(batch).to_list()]
    differing = [(a, b) for a, b in zip(python_ids, graph_ids, strict=True) if a != b]
    positions = sum(
        sum(x != y for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b)) for a, b in differing
    )
    tokens = sum(map(len, python_ids))

    timings = {
        "python sentencepiece, loop over notes": best_seconds(
            lambda: [processor.encode(note) for note in notes], repeats
        ),
        f"tensorflow-text tf.function, batch {batch_size}": best_seconds(
            lambda: [in_graph(batch).flat_values.numpy() for batch in batches], repeats
        ),
        f"  the same + ALBERT packing to {seq}": best_seconds(
            lambda: [packed(batch)["token_ids"].numpy() for batch in batches], repeats
        ),
    }
    size_mb = sum(len(n.encode("utf-8")) for n in notes) / 1e6
    per_note = tokens / len(notes)
    print(f"\n{name}: {len(notes)} notes, {size_mb:.1f} MB, {tokens:,} tokens ({per_note:.0f} per note)")
    print(
        f"ids equal to the Python library's for {len(notes) - len(differing)} of {len(notes)} notes", end=""
    )
    print(f"; {positions} differing positions" if differing else "")
    print(f"{'method':<44}{'notes/s':>10}{'tokens/s':>14}{'vs loop':>9}")
    loop_seconds = next(iter(timings.values()))
    for method, seconds in timings.items():
        ratio = loop_seconds / seconds
        print(f"{method:<44}{len(notes) / seconds:>10,.0f}{tokens / seconds:>14,.0f}{ratio:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--spm-model", type=Path, help="a trained spm.model (default: train one on the sample)"
    )
    parser.add_argument("--vocab-size", type=int, default=8000, help="vocabulary when training here")
    parser.add_argument("--full", type=Path, help="the full MTSamples CSV (mtsamples.csv), if you have it")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tf-threads", type=int, default=0, help="TF intra/inter-op threads (0: TF's default)"
    )
    args = parser.parse_args()

    if args.tf_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.tf_threads)
    sample = read_notes(SAMPLE_CSV)
    if args.spm_model:
        model_proto = args.spm_model.read_bytes()
        print(f"model: {args.spm_model}")
    else:
        sentences = (line for note in sample for line in note.splitlines())
        with tempfile.TemporaryDirectory() as out:
            trained = train_sentencepiece(sentences, out, vocab_size=args.vocab_size)
            model_proto = trained.model_path.read_bytes()
        print(f"model: trained here on the sample's lines, vocab {trained.stats['vocab_size']}")
    threads = args.tf_threads or "default"
    print(f"machine: {os.cpu_count()} CPUs; TF threads: {threads}; the Python loop runs on one thread")

    settings = (model_proto, args.batch_size, args.repeats, args.seq_length)
    bench_corpus("shipped sample (data/sample/mtsamples_sample.csv)", sample, *settings)
    if args.full is None:
        print("\nfull MTSamples corpus: not measured (pass --full PATH_TO_MTSAMPLES_CSV)")
    elif not args.full.is_file():
        print(f"\nfull MTSamples corpus: not found at {args.full}, not measured")
    else:
        bench_corpus("full MTSamples corpus", read_notes(args.full), *settings)


if __name__ == "__main__":
    main()
