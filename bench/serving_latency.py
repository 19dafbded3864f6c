"""CPU serving benchmark: our export behind the TF-Serving-protocol server against HF transformers.

For each ALBERT config (--configs, default tiny and base-v2) it builds one model: a SentencePiece model
trained on the shipped sample's notes, an AlbertClassifier with --labels classes and seeded random
weights, exported as a SavedModel whose `serving_default` takes raw text (SentencePiece and packing
in-graph with `NotePacker`, then the classifier and a softmax) -> probabilities, label_names, with the
pipeline's warmup requests. The same weights go to an HF folder (`save_hf_model`).

Compared, one note per request:
    ours  `ServingClient.predict` -> gRPC over 127.0.0.1 -> the local model server (serving/
          model_server.py, in this process, its default 8 workers) -> in-graph tokenization + model
    HF    bench/hf_serving_worker.py in `.venv-hf`: AlbertTokenizer (Python/Rust `tokenizers`) +
          AlbertForSequenceClassification in PyTorch, in process, no network hop
Latency is p50/p99 of --requests sequential requests after --warmup (fewer, at least 10, where
--latency-seconds runs out first); throughput is notes/s with 8 and 32 client threads for --seconds
each. Both sides get every core by default (--torch-threads, --tf-threads; 0 = all cores), so that
neither wins by having more: on a busy machine torch's OpenMP workers can spin against other work
(2 threads made base-v2 HF 8x slower here once, with another job running), so measure on a quiet
machine, and a flag shows other settings. Ratios are ours/HF: above 1 for
latency means ours is slower, above 1 for throughput means ours serves more. The first --check notes'
probabilities are compared, to show both sides run the same weights. Note text is never printed.

Ours is measured for each export in --variants (`default` is what the pipeline pushes; `xla` and
`bf16` are what the stack offers on CPU) and broken down: SentencePiece + packing alone, the
classifier alone, the whole signature in process, and the gRPC hop (end to end minus the signature).
int8 is not among them: TensorFlow's int8 paths are TFLite's or TF-TRT's, and neither is a
SavedModel that stock TF Serving runs on CPU.

    .venv/bin/python bench/serving_latency.py [--configs tiny,base-v2] [--seq 128] [--requests 100] \\
        [--variants default,xla,bf16] [--torch-threads 0] [--tf-threads 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np
import sentencepiece as spm
import tensorflow as tf
from timing import latency_ms

from albert_keras import AlbertBackbone, AlbertClassifier
from albert_keras.config import AlbertConfig
from albert_keras.convert.hf_files import save_hf_model
from components.sentencepiece_tokenizer.tokenize_graph import NotePacker
from components.sentencepiece_tokenizer.train import train_sentencepiece
from components.trainer.finetune import INPUTS, write_warmup_requests
from serving.client import ServingClient
from serving.model_server import ModelServer
from serving.models_config import ModelEntry

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = ROOT / "data" / "sample" / "mtsamples_sample.csv"
HF_PYTHON = ROOT / ".venv-hf" / "bin" / "python"
HF_WORKER = Path(__file__).resolve().with_name("hf_serving_worker.py")
MODEL_NAME = "clinical_albert"


def read_notes(path: Path) -> list[str]:
    """One transcription per MTSamples `sample_id` (a note filed under several specialties repeats)."""
    csv.field_size_limit(1 << 24)
    with open(path, newline="", encoding="utf-8") as f:
        notes = {row["sample_id"]: row["transcription"] for row in csv.DictReader(f)}
    return [note for note in notes.values() if note.strip()]


class RawTextClassifier(tf.Module):
    """`serving_default`: raw notes -> probabilities and label_names (one row per note), tokenized
    in-graph. With `xla`, the classifier part (not the SentencePiece ops, which XLA cannot compile)
    runs as an XLA cluster: `jit_compile=True` on an inner function, which the SavedModel keeps."""

    def __init__(self, packer: NotePacker, classifier: keras.Model, label_names: list[str], xla: bool):
        super().__init__()
        self.packer = packer
        self.classifier = classifier
        self.label_names = tf.constant(label_names)
        self.score = tf.function(self._score, jit_compile=xla)

    def _score(self, packed: dict[str, tf.Tensor]) -> tf.Tensor:
        logits = self.classifier(packed, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        packed = self.packer(text)
        probabilities = self.score({k: packed[k] for k in INPUTS})
        rows = tf.shape(probabilities)[0]
        return {
            "probabilities": probabilities,
            "label_names": tf.tile(self.label_names[tf.newaxis], [rows, 1]),
        }


#: What each variant of our export changes; `default` is what the pipeline exports.
VARIANTS = {
    "default": "float32, TensorFlow's graph executor with oneDNN (TF 2.16's default on x86)",
    "xla": "float32, the classifier as one XLA:CPU cluster (stock TF Serving needs "
    "--xla_cpu_compilation_enabled)",
    "bf16": "Keras mixed_bfloat16 (bfloat16 matmuls, float32 weights), same weights",
}


def make_classifier(preset: str, vocab_size: int, seq: int, labels: int, seed: int, dtype: str):
    base = AlbertConfig.preset(preset)
    config = base.replace(
        vocab_size=vocab_size, max_position_embeddings=max(seq, base.max_position_embeddings)
    )
    keras.utils.set_random_seed(seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        return AlbertClassifier(AlbertBackbone(config), num_labels=labels)
    finally:
        keras.config.set_dtype_policy(previous)


def build_models(
    preset: str, model_proto: bytes, seq: int, labels: int, seed: int, out: Path, variants: list[str]
) -> tuple[dict[str, Path], Path]:
    """Writes one served export per variant under `out/<variant>/1/` and the float32 weights as an HF
    folder `out/hf/`; returns the export folders and the HF folder."""
    vocab_size = spm.SentencePieceProcessor(model_proto=model_proto).get_piece_size()
    classifier = make_classifier(preset, vocab_size, seq, labels, seed, "float32")
    names = [f"class_{i:02d}" for i in range(labels)]
    packer = NotePacker(model_proto, seq)
    exports = {}
    for variant in variants:
        model = classifier
        if variant == "bf16":
            model = make_classifier(preset, vocab_size, seq, labels, seed, "mixed_bfloat16")
            model.set_weights(classifier.get_weights())
        module = RawTextClassifier(packer, model, names, xla=variant == "xla")
        export_dir = out / variant / "1"
        tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve_text})
        write_warmup_requests(str(export_dir))
        exports[variant] = export_dir
    hf_dir = out / "hf"
    save_hf_model(classifier, str(hf_dir), label_names=names)
    return exports, hf_dir


def breakdown(export_dir: Path, notes: list[str], args: argparse.Namespace) -> dict[str, float]:
    """p50 ms of the parts of one request, each timed alone in this process on the loaded export:
    SentencePiece and packing; the classifier on packed inputs; `serving_default` (both, as the
    server runs them). The end-to-end gRPC figure minus the last is the hop: client, protocol buffers,
    gRPC on loopback and the server's request handling. Run before the server loads the same export:
    tensorflow-text's SentencePiece resource is shared by name within a process, and unloading one
    copy of the export frees it under the other."""
    loaded = tf.saved_model.load(str(export_dir))
    packed = {}
    for note in notes:
        inputs = loaded.packer(tf.constant([note]))
        packed[note] = {k: inputs[k] for k in INPUTS}
    serve = loaded.signatures["serving_default"]
    parts = {
        "tokenize": lambda note: loaded.packer(tf.constant([note])),
        "model": lambda note: loaded.score(packed[note]),
        "signature": lambda note: serve(text=tf.constant([note])),
    }
    return {
        name: latency_ms(run, notes, args.requests, args.warmup, args.latency_seconds)["p50_ms"]
        for name, run in parts.items()
    }


def served_throughput(target: str, notes: list[str], threads: int, seconds: float) -> float:
    """Notes/s with `threads` client threads, each with its own channel, sending one-note Predicts.

    Every thread connects and sends one untimed request first; the clock starts when all have. Threads
    send until `seconds` have gone; the rate is every request sent over the time until the last one
    finished (the drain counts: with 32 threads a base-size burst can take longer than the window)."""
    done = [0] * threads
    window: list[float] = []
    opened = threading.Barrier(threads, action=lambda: window.append(time.perf_counter() + seconds))

    def worker(index: int) -> None:
        with ServingClient(target, MODEL_NAME, timeout=120.0) as client:
            try:
                client.predict([notes[index % len(notes)]])
            finally:
                opened.wait()  # a thread that failed still releases the others
            deadline = window[0]
            i = index
            while time.perf_counter() < deadline:
                client.predict([notes[i % len(notes)]])
                done[index] += 1
                i += threads

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / (time.perf_counter() - (window[0] - seconds))


def measure_ours(export_dir: Path, notes: list[str], args: argparse.Namespace) -> dict:
    server = ModelServer([ModelEntry(MODEL_NAME, str(export_dir.parent))], port=0, poll_seconds=0)
    port = server.start()
    target = f"127.0.0.1:{port}"
    try:
        with ServingClient(target, MODEL_NAME, timeout=60.0) as client:
            figures = latency_ms(
                lambda note: client.predict([note]), notes, args.requests, args.warmup, args.latency_seconds
            )
            check = [list(client.predict([note])[0].values()) for note in notes[: args.check]]
        rates = {str(k): served_throughput(target, notes, k, args.seconds) for k in args.threads}
    finally:
        server.stop(grace_seconds=1.0)
    return {"latency": figures, "throughput": rates, "probabilities": check}


def print_breakdown(rows: list[tuple[str, dict[str, float], float]]) -> None:
    """Where one request's time goes, p50 ms per part (parts are timed alone, so they need not add up)."""
    print("\nwhere the time goes (ours, p50 ms, one note; each part timed alone in process):")
    print(f"{'export':>16}  {'tokenize':>8}  {'model':>8}  {'signature':>9}  {'gRPC e2e':>8}  {'hop':>6}")
    for name, parts, e2e in rows:
        print(
            f"{name:>16}  {parts['tokenize']:8.1f}  {parts['model']:8.1f}  {parts['signature']:9.1f}  "
            f"{e2e:8.1f}  {e2e - parts['signature']:6.1f}"
        )


def measure_hf(
    hf_dir: Path, model_proto: bytes, notes: list[str], args: argparse.Namespace, work: Path
) -> dict:
    """Runs the HF worker in `.venv-hf`; its JSON result. Notes go through a file, never argv."""
    processor = spm.SentencePieceProcessor(model_proto=model_proto)
    vocab = [[processor.id_to_piece(i), processor.get_score(i)] for i in range(processor.get_piece_size())]
    (work / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (work / "notes.json").write_text(json.dumps(notes), encoding="utf-8")
    command = [
        str(HF_PYTHON), str(HF_WORKER),
        "--model-dir", str(hf_dir),
        "--vocab", str(work / "vocab.json"),
        "--notes", str(work / "notes.json"),
        "--seq", str(args.seq),
        "--requests", str(args.requests),
        "--warmup", str(args.warmup),
        "--latency-seconds", str(args.latency_seconds),
        "--seconds", str(args.seconds),
        "--threads", ",".join(map(str, args.threads)),
        "--torch-threads", str(args.torch_threads),
        "--check", str(args.check),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no stderr"])[-1]
        kind = last.split(":", 1)[0]  # the exception's type only: its message might quote a note
        raise RuntimeError(f"the HF worker failed with exit code {done.returncode}: {kind}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(ours: float | None, hf: float | None) -> str:
    return "-" if ours is None or not hf else f"{ours / hf:.2f}x"


def print_table(rows: list[tuple[str, dict, dict | None]], threads: list[int]) -> None:
    """One line per config: ours and HF latency (ms) and throughput (notes/s), then ours/HF."""
    keys = [("latency", "p50_ms", "p50 ms"), ("latency", "p99_ms", "p99 ms")]
    keys += [("throughput", str(k), f"@{k} n/s") for k in threads]
    header = ["config"] + [f"ours {label}" for *_, label in keys] + [f"HF {label}" for *_, label in keys]
    header += [f"o/h {label.split()[0]}" for *_, label in keys]
    lines = [header]
    for name, ours, hf in rows:
        ours_values = [ours[group][key] for group, key, _ in keys]
        hf_values = [hf[group][key] if hf else None for group, key, _ in keys]
        lines.append(
            [name]
            + [_number(v) for v in ours_values]
            + [_number(v) for v in hf_values]
            + [_ratio(o, h) for o, h in zip(ours_values, hf_values, strict=True)]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print("\nlatency: one note per request, ms; throughput: notes/s at N client threads; o/h = ours / HF")
    for line in lines:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default="tiny,base-v2", help="comma-separated ALBERT presets")
    parser.add_argument("--seq", type=int, default=128, help="packed sequence length")
    parser.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece vocabulary")
    parser.add_argument("--labels", type=int, default=40, help="classifier classes")
    parser.add_argument("--requests", type=int, default=100, help="sequential requests for latency")
    parser.add_argument("--warmup", type=int, default=10, help="requests before timing")
    parser.add_argument(
        "--latency-seconds", type=float, default=20.0, help="stop latency runs after this (min 10 requests)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    parser.add_argument("--threads", default="8,32", help="client thread counts for throughput")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads (default 0: all cores, as TensorFlow uses)",
    )
    parser.add_argument(
        "--tf-threads", type=int, default=0, help="TensorFlow intra-op threads (default 0: all cores)"
    )
    parser.add_argument(
        "--variants",
        default="default,xla,bf16",
        help=f"comma-separated exports of ours to measure: {', '.join(VARIANTS)} (HF is measured once)",
    )
    parser.add_argument("--check", type=int, default=5, help="notes whose probabilities are compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-hf", action="store_true", help="measure only ours")
    args = parser.parse_args()
    args.threads = [int(k) for k in args.threads.split(",")]
    cores = os.cpu_count() or 1
    args.torch_threads = args.torch_threads or cores
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown --variants {unknown}; known: {sorted(VARIANTS)}")
    if args.tf_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)

    notes = read_notes(SAMPLE_CSV)
    with_hf = not args.no_hf and HF_PYTHON.is_file()
    print(f"machine: {cores} CPU cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"TF {tf.__version__}, intra-op threads {args.tf_threads or cores}; "
          f"torch intra-op threads {args.torch_threads}")  # fmt: skip
    print(
        f"notes: {len(notes)} from the shipped sample; seq {args.seq}; {args.labels} classes; random weights"
    )
    print("ours: gRPC round trip on 127.0.0.1 to the TF-Serving-protocol server (same process) + in-graph")
    print("      tokenization (tensorflow-text SentencePiece + packing) + Keras ALBERT in TF; exports:")
    for variant in variants:
        print(f"      {variant}: {VARIANTS[variant]}")
    if with_hf:
        print("HF:   in-process PyTorch AlbertForSequenceClassification + AlbertTokenizer (Python/Rust)")
    elif args.no_hf:
        print("HF:   not measured (--no-hf)")
    else:
        print("HF:   not measured: the side environment .venv-hf is missing (scripts/setup_hf_env.sh)")

    rows, parts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sentences = (line for note in notes for line in note.splitlines())
        trained = train_sentencepiece(sentences, str(work / "spm"), vocab_size=args.vocab_size)
        model_proto = trained.model_path.read_bytes()
        for preset in args.configs.split(","):
            out = work / preset
            start = time.perf_counter()
            exports, hf_dir = build_models(
                preset, model_proto, args.seq, args.labels, args.seed, out, variants
            )
            print(f"\n[{preset}] built and exported in {time.perf_counter() - start:.0f}s")
            hf = None
            if with_hf:
                print(f"[{preset}] measuring HF")
                hf = measure_hf(hf_dir, model_proto, notes, args, out)
            for variant in variants:
                name = preset if variant == "default" else f"{preset} {variant}"
                print(f"[{name}] measuring ours")
                in_process = breakdown(exports[variant], notes, args)
                ours = measure_ours(exports[variant], notes, args)
                parts.append((name, in_process, ours["latency"]["p50_ms"]))
                if hf and args.check:
                    difference = np.abs(np.array(ours["probabilities"]) - np.array(hf["probabilities"]))
                    same_top = np.mean(
                        np.argmax(ours["probabilities"], axis=1) == np.argmax(hf["probabilities"], axis=1)
                    )
                    print(f"[{name}] probabilities of {len(difference)} notes, ours vs HF: max |diff| "
                          f"{difference.max():.2e}, same top class {same_top:.0%}")  # fmt: skip
                counts = [f"ours {ours['latency']['requests']}"] + (
                    [f"HF {hf['latency']['requests']}"] if hf else []
                )
                print(f"[{name}] latency requests timed: {', '.join(counts)}")
                rows.append((name, ours, hf))
    print_table(rows, args.threads)
    print_breakdown(parts)


if __name__ == "__main__":
    main()
