"""HF transformers' side of bench/serving_latency.py: in-process PyTorch CPU inference, no server.

Runs in the side environment with torch and transformers (scripts/setup_hf_env.sh), started by
bench/serving_latency.py as a subprocess:

    .venv-hf/bin/python bench/hf_serving_worker.py --model-dir HF_DIR --vocab VOCAB.json \\
        --notes NOTES.json --seq 128 --requests 100 --warmup 10 --latency-seconds 20 --seconds 5 \\
        --threads 8,32 --torch-threads 1 --check 5

It loads `AlbertForSequenceClassification` from HF_DIR (written by `save_hf_model`) and builds an
`AlbertTokenizer` from VOCAB.json, the (piece, score) list of the benchmark's SentencePiece model:
the side environment has no `sentencepiece` package, and transformers 5's AlbertTokenizer is a
`tokenizers` Unigram model over that same list. Its normalizer (NFKD, accents stripped, lower case)
differs from the SentencePiece model's (NFKC with case folding) only on unusual characters.

Each request is one note: tokenize (truncate and pad to --seq, as the served graph packs), forward
under `torch.inference_mode`, softmax. Measured: latency p50/p99 of --requests sequential requests
after --warmup (fewer, at least 10, once --latency-seconds have gone), and notes/s with each
--threads count of Python threads sending requests for --seconds (torch releases the GIL inside its
ops; `torch.set_num_threads(--torch-threads)` sets the intra-op pool they share). Prints one JSON
object on stdout: figures and, for the first --check notes, the probabilities, so the caller can
compare them with the served model's. Never note text.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from timing import latency_ms


def load(model_dir: Path, vocab_path: Path) -> tuple[torch.nn.Module, transformers.AlbertTokenizer]:
    """The classifier in eval mode and a tokenizer over the benchmark's SentencePiece vocabulary."""
    model = transformers.AlbertForSequenceClassification.from_pretrained(model_dir).eval()
    vocab = [(piece, float(score)) for piece, score in json.loads(vocab_path.read_text(encoding="utf-8"))]
    tokenizer = transformers.AlbertTokenizer(vocab=vocab)
    return model, tokenizer


def classify(model: torch.nn.Module, tokenizer, note: str, seq: int) -> np.ndarray:
    """Class probabilities of one note, tokenization included: [1, classes]."""
    encoded = tokenizer([note], truncation=True, max_length=seq, padding="max_length", return_tensors="pt")
    with torch.inference_mode():
        logits = model(**encoded).logits
    return torch.softmax(logits, dim=-1).numpy()


def throughput(run, notes: list[str], threads: int, seconds: float) -> float:
    """Notes per second with `threads` threads, each sending one-note requests for `seconds`: every
    request sent, over the time until the last one finished."""
    done = [0] * threads
    start = time.perf_counter()
    deadline = start + seconds

    def worker(index: int) -> None:
        i = index
        while time.perf_counter() < deadline:
            run(notes[i % len(notes)])
            done[index] += 1
            i += threads

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--vocab", type=Path, required=True, help="JSON list of [piece, score]")
    parser.add_argument("--notes", type=Path, required=True, help="JSON list of note texts")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", default="8,32", help="comma-separated client thread counts")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (0: default)")
    parser.add_argument("--check", type=int, default=5, help="notes whose probabilities are returned")
    args = parser.parse_args()

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    model, tokenizer = load(args.model_dir, args.vocab)
    notes = json.loads(args.notes.read_text(encoding="utf-8"))

    def run(note: str) -> np.ndarray:
        return classify(model, tokenizer, note, args.seq)

    result = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "latency": latency_ms(run, notes, args.requests, args.warmup, args.latency_seconds),
        "throughput": {
            str(k): throughput(run, notes, k, args.seconds) for k in map(int, args.threads.split(","))
        },
        "probabilities": [run(note)[0].tolist() for note in notes[: args.check]],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
