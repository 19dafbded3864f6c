"""Pretraining throughput: albert_keras's step (Keras 3, JAX backend, XLA) against HF transformers.

Both sides train ALBERT's pretraining objective (masked LM at the masked positions + sentence order)
with AdamW on the same config, batch and sequence length, on random token ids without padding, in
bfloat16 compute with float32 master weights:

    ours         AlbertPretrainer under KERAS_BACKEND=jax, dtype policy mixed_bfloat16, compiled with
                 jit_compile: the very step that `fit` runs (`model.train_function`, donated state)
    hf-eager     transformers AlbertForPreTraining, SDPA attention, torch.autocast(bfloat16)
    hf-compile   the same, forward and loss under torch.compile

Each (implementation, shape) runs in its own process, one after another, so no framework holds
device memory that another needs; warm-up steps (compilation included) are not timed. Printed and
written to --json: sequences/s, tokens/s, model FLOP/s as a share of the device's dense bf16 peak
(FLOPs per sequence: 6 x matmul parameters x seq, the shared layer counted once per layer it runs,
+ 12 x layers x hidden x seq^2 for attention; the same count for both sides, though ours runs the
vocabulary projection at the masked positions only), and ours / hf-compile at each shape.

    python bench/train_throughput.py --preset base --shape 64x512 --shape 128x128 --json OUT.json
    .venv/bin/python bench/train_throughput.py --preset tiny --shape 4x32 --steps 3 --warmup 1 \\
        --hf-python .venv-hf/bin/python      # the CPU check that tests/bench runs

The HF side needs only torch and transformers (`--hf-python` may be another environment); ours needs
keras and jax, not TensorFlow. `--profile DIR` also traces a few of our steps and sums GPU kernel
time by kind (matmul, attention, XLA fusions, ...). `--save-model PATH` (ours only) writes the
trained pretrainer as a .keras file with its outputs on a fixed batch, for the JAX -> TensorFlow check.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ("ours", "hf-eager", "hf-compile")
# Dense bfloat16 tensor-core peak, FLOP/s, by device name (NVIDIA's datasheets; SXM parts).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
MASKED_FRACTION = 0.15


# -- what both sides share -----------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, int]:
    try:
        batch, seq = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be BATCHxSEQ, e.g. 64x512; got {text!r}") from None
    return batch, seq


def max_predictions(seq: int) -> int:
    """Masked positions per sequence: 15% of the tokens, rounded up (20 at 128, 77 at 512)."""
    return math.ceil(MASKED_FRACTION * seq)


def flops_per_sequence(config: dict, seq: int) -> float:
    """Training FLOPs of one sequence, as the benchmark counts them for both sides (module doc)."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    emb, vocab = config["embedding_size"], config["vocab_size"]
    per_layer = 4 * hidden * hidden + 2 * hidden * inter  # q, k, v, output; FFN in and out
    matmul_params = layers * per_layer + emb * hidden + hidden * emb + emb * vocab
    return 6.0 * matmul_params * seq + 12.0 * layers * hidden * seq * seq


def random_batch(config: dict, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids (no padding), two segments, distinct masked positions, sentence-order labels."""
    rng = np.random.default_rng(seed)
    predictions = max_predictions(seq)
    token_ids = rng.integers(5, config["vocab_size"], size=(batch, seq), dtype=np.int32)
    segment_ids = np.zeros((batch, seq), np.int32)
    segment_ids[:, seq // 2 :] = 1
    positions = np.sort(
        np.stack([rng.choice(np.arange(1, seq), predictions, replace=False) for _ in range(batch)]), axis=1
    ).astype(np.int32)
    return {
        "token_ids": token_ids,
        "segment_ids": segment_ids,
        "padding_mask": np.ones((batch, seq), np.int32),
        "mask_positions": positions,
        "mlm_labels": np.take_along_axis(token_ids, positions, axis=1),
        "mlm_weights": np.ones((batch, predictions), np.float32),
        "sop_labels": rng.integers(0, 2, size=(batch,), dtype=np.int32),
    }


def peak_flops(device_name: str) -> float | None:
    for key, peak in PEAK_BF16.items():
        if key in device_name:
            return peak
    return None


def timed_steps(step, sync, warmup: int, steps: int) -> float:
    """Seconds for `steps` calls of `step` after `warmup` untimed ones; `sync` waits for the device."""
    for _ in range(warmup):
        step()
    sync()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return time.perf_counter() - began


# -- ours: albert_keras under JAX ----------------------------------------------------------------


def run_ours(args, config: dict) -> dict:
    os.environ["KERAS_BACKEND"] = "jax"
    sys.path.insert(0, str(ROOT))
    import jax
    import keras

    from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer

    if keras.backend.backend() != "jax":
        raise SystemExit(
            f"ours runs under KERAS_BACKEND=jax; keras was already set to {keras.backend.backend()}"
        )
    keras.utils.set_random_seed(0)
    policy = "mixed_bfloat16" if args.precision == "bf16" else "float32"
    backbone = AlbertBackbone(AlbertConfig.from_dict(config), dtype=policy)
    model = AlbertPretrainer(backbone)
    model.compile(optimizer=_keras_optimizer(keras, args.optimizer), jit_compile=True)

    data = random_batch(config, args.batch, args.seq)
    x = {k: data[k] for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}
    y = {k: data[k] for k in ("mlm_labels", "mlm_weights", "sop_labels")}
    began = time.perf_counter()
    model.train_on_batch(x, y)  # builds optimizer and metrics, compiles the step `fit` uses
    compile_seconds = time.perf_counter() - began

    # The state `fit` threads through `model.train_function`; the step donates it, so each call
    # hands back the next state in the same device buffers.
    state = [
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    ]
    on_device = jax.device_put((x, y, None))
    logs = {}

    def step():
        nonlocal state, logs
        logs, state = model.train_function(state, iter([on_device]))

    def sync():
        jax.block_until_ready(state)

    seconds = timed_steps(step, sync, args.warmup, args.steps)
    result = {
        "device": jax.devices()[0].device_kind,
        "versions": {"jax": jax.__version__, "keras": keras.__version__},
        "compile_seconds": round(compile_seconds, 1),
        "seconds": seconds,
        "final_loss": float(logs["loss"]),
        "parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
    }
    if args.profile:
        result["profile"] = _profile_ours(jax, step, sync, Path(args.profile))
    if args.save_model:
        _save_trained(model, state, x, Path(args.save_model))
    return result


def _keras_optimizer(keras, name: str):
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01)
    from albert_keras import Lamb

    return Lamb(learning_rate=1e-4)


def _save_trained(model, state, x: dict, path: Path) -> None:
    """Writes the trained state back into the model, saves it (.keras) and its outputs on `x` (.npz).

    Every part of the state goes back: the step donated the buffers the model's variables held."""
    owners = (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )
    for variables, values in zip(owners, state, strict=True):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    outputs = model.predict(x, verbose=0)
    np.savez(path.with_suffix(".npz"), **x, **{name: np.asarray(v) for name, v in outputs.items()})


KERNEL_KINDS = (
    ("attention (cuDNN)", ("cudnn", "fmha", "flash")),
    ("matmul", ("gemm", "cutlass", "nvjet", "xmma", "cublas", "triton_gemm", "sm90")),
    ("reduction fusion", ("reduce", "reduction")),
    ("XLA fusion", ("fusion", "loop_", "input_", "wrapped_")),
    ("copy / transpose", ("copy", "transpose", "memcpy", "memset")),
    ("scatter / gather", ("scatter", "gather")),
)


def _kernel_kind(name: str) -> str:
    lowered = name.lower()
    for kind, needles in KERNEL_KINDS:
        if any(needle in lowered for needle in needles):
            return kind
    return "other"


def _profile_ours(jax, step, sync, folder: Path, steps: int = 5) -> dict:
    """GPU kernel time over `steps` steps from a JAX profiler trace, by kind and by kernel."""
    folder.mkdir(parents=True, exist_ok=True)
    sync()
    with jax.profiler.trace(str(folder), create_perfetto_trace=True):
        for _ in range(steps):
            step()
        sync()
    traces = sorted(folder.rglob("perfetto_trace.json.gz"))
    if not traces:
        return {"error": "the profiler wrote no perfetto trace"}
    with gzip.open(traces[-1], "rt") as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    gpu_pids = {
        e["pid"]
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "process_name"
        and "GPU" in str(e.get("args", {}).get("name"))
    }
    thread_names = {
        (e["pid"], e["tid"]): str(e.get("args", {}).get("name"))
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name" and e.get("pid") in gpu_pids
    }
    # A GPU process holds the kernels (stream threads) and, on other threads, the XLA ops and
    # modules that launched them: summing all would count the same time two or three times.
    by_thread_kind: dict[str, dict[str, float]] = {
        "kernels": defaultdict(float),
        "xla_ops": defaultdict(float),
    }
    first_start, last_end, kernel_count = math.inf, 0.0, 0
    for e in events:
        if e.get("ph") != "X" or e.get("pid") not in gpu_pids:
            continue
        thread = thread_names.get((e["pid"], e.get("tid")), "")
        if "XLA Ops" in thread:
            by_thread_kind["xla_ops"][e.get("name", "?")] += float(e.get("dur", 0.0))
        elif "Stream" in thread or not thread:
            by_thread_kind["kernels"][e.get("name", "?")] += float(e.get("dur", 0.0))
            first_start = min(first_start, float(e["ts"]))
            last_end = max(last_end, float(e["ts"]) + float(e.get("dur", 0.0)))
            kernel_count += 1
    by_kernel = by_thread_kind["kernels"]
    total = sum(by_kernel.values())
    if not total:
        return {"error": "no GPU kernel events in the trace", "threads": sorted(set(thread_names.values()))}
    by_kind: dict[str, float] = defaultdict(float)
    for name, micros in by_kernel.items():
        by_kind[_kernel_kind(name)] += micros

    def top(table: dict[str, float]) -> list:
        ranked = sorted(table.items(), key=lambda item: -item[1])[:25]
        return [[name[:120], round(micros / 1000 / steps, 3)] for name, micros in ranked]

    return {
        "gpu_ms_per_step": total / 1000 / steps,
        # First kernel start to last kernel end: above gpu_ms_per_step, the GPU sat idle between kernels.
        "span_ms_per_step": (last_end - first_start) / 1000 / steps,
        "kernels_per_step": kernel_count / steps,
        "share_by_kind": {k: round(v / total, 4) for k, v in sorted(by_kind.items(), key=lambda i: -i[1])},
        "top_kernels": top(by_kernel),
        "top_xla_ops": top(by_thread_kind["xla_ops"]),
        "threads": sorted(set(thread_names.values()))[:20],
    }


# -- HF transformers on PyTorch ------------------------------------------------------------------


def run_hf(args, config: dict, compiled: bool) -> dict:
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    hf_config = transformers.AlbertConfig(
        **{k: v for k, v in config.items() if k != "sharing"}, attn_implementation="sdpa"
    )
    model = transformers.AlbertForPreTraining(hf_config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device == "cuda")
    forward = torch.compile(model) if compiled else model

    data = random_batch(config, args.batch, args.seq)
    labels = np.full((args.batch, args.seq), -100, np.int64)
    np.put_along_axis(labels, data["mask_positions"], data["mlm_labels"], axis=1)
    inputs = {
        "input_ids": torch.from_numpy(data["token_ids"].astype(np.int64)).to(device),
        "token_type_ids": torch.from_numpy(data["segment_ids"].astype(np.int64)).to(device),
        "attention_mask": torch.from_numpy(data["padding_mask"].astype(np.int64)).to(device),
        "labels": torch.from_numpy(labels).to(device),
        "sentence_order_label": torch.from_numpy(data["sop_labels"].astype(np.int64)).to(device),
    }
    autocast_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    loss_value = {}

    def step():
        with torch.autocast(device, dtype=autocast_dtype, enabled=args.precision == "bf16"):
            loss = forward(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value["loss"] = loss

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    began = time.perf_counter()
    step()
    sync()
    compile_seconds = time.perf_counter() - began
    seconds = timed_steps(step, sync, max(args.warmup - 1, 0), args.steps)
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "compile_seconds": round(compile_seconds, 1),
        "seconds": seconds,
        "final_loss": float(loss_value["loss"]),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }


# -- the parent: one process per measurement -----------------------------------------------------


def worker_main(args) -> None:
    config = json.loads(args.config_json)
    if args.worker == "ours":
        result = run_ours(args, config)
    else:
        result = run_hf(args, config, compiled=args.worker == "hf-compile")
    print("RESULT " + json.dumps(result), flush=True)


def measure(args, impl: str, config: dict, batch: int, seq: int) -> dict:
    python = args.hf_python if impl.startswith("hf") else args.ours_python
    command = [
        python,
        str(Path(__file__).resolve()),
        "--worker",
        impl,
        "--config-json",
        json.dumps(config),
        "--batch",
        str(batch),
        "--seq",
        str(seq),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--precision",
        args.precision,
        "--optimizer",
        args.optimizer,
    ]
    if impl == "ours" and args.profile:
        command += ["--profile", str(Path(args.profile) / f"{batch}x{seq}")]
    if impl == "ours" and args.save_model:
        command += ["--save-model", args.save_model]
    env = dict(os.environ)
    if impl == "ours":
        env["KERAS_BACKEND"] = "jax"
        if args.xla_flags:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    began = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "batch": batch, "seq": seq, "error": f"timed out after {args.timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        return {"impl": impl, "batch": batch, "seq": seq, "error": f"exit {done.returncode}: {tail}"}
    result = json.loads(lines[-1][len("RESULT ") :])
    result.update(
        impl=impl, batch=batch, seq=seq, steps=args.steps, wall_seconds=round(time.perf_counter() - began)
    )
    sequences_per_second = batch * args.steps / result["seconds"]
    result["sequences_per_second"] = sequences_per_second
    result["tokens_per_second"] = sequences_per_second * seq
    result["model_tflops"] = sequences_per_second * flops_per_sequence(config, seq) / 1e12
    peak = peak_flops(result["device"])
    result["share_of_peak"] = result["model_tflops"] * 1e12 / peak if peak else None
    return result


def add_ratios(results: list[dict]) -> None:
    """ours / hf-compile (and / hf-eager) sequences per second at the same batch and seq."""
    by_key = {(r["impl"], r["batch"], r["seq"]): r for r in results if "error" not in r}
    for r in results:
        if r["impl"] != "ours" or "error" in r:
            continue
        for reference in ("hf-compile", "hf-eager"):
            other = by_key.get((reference, r["batch"], r["seq"]))
            if other:
                r[f"ratio_to_{reference}"] = r["sequences_per_second"] / other["sequences_per_second"]


def report(results: list[dict]) -> str:
    rows = ["| implementation | batch x seq | sequences/s | tokens/s | share of peak | ours / HF compiled |"]
    rows.append("|---|---|---|---|---|---|")
    for r in results:
        shape = f"{r['batch']} x {r['seq']}"
        if "error" in r:
            rows.append(f"| {r['impl']} | {shape} | failed: {r['error'].splitlines()[-1][:80]} | | | |")
            continue
        share = f"{100 * r['share_of_peak']:.1f}%" if r["share_of_peak"] is not None else "n/a"
        ratio = f"{r['ratio_to_hf-compile']:.2f}x" if "ratio_to_hf-compile" in r else ""
        rows.append(
            f"| {r['impl']} | {shape} | {r['sequences_per_second']:,.1f} | {r['tokens_per_second']:,.0f} "
            f"| {share} | {ratio} |"
        )
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="base", help="an albert_keras preset (base = albert-base-v2)")
    parser.add_argument("--shape", action="append", type=parse_shape, help="BATCHxSEQ; repeatable")
    parser.add_argument("--impl", action="append", choices=IMPLEMENTATIONS, help="repeatable; default all")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation included)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument(
        "--optimizer", choices=("adamw", "lamb"), default="adamw", help="HF always uses AdamW"
    )
    parser.add_argument("--xla-flags", default="", help="added to XLA_FLAGS for ours")
    parser.add_argument("--ours-python", default=sys.executable)
    parser.add_argument("--hf-python", default=sys.executable)
    parser.add_argument("--timeout", type=int, default=600, help="seconds for one measurement")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--profile", help="ours: trace 5 steps per shape under this folder")
    parser.add_argument("--save-model", help="ours: save the trained pretrainer here (.keras)")
    # Internal: one measurement in this process.
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0

    os.environ.setdefault("KERAS_BACKEND", "jax")  # importing albert_keras imports keras
    sys.path.insert(0, str(ROOT))
    from albert_keras.config import AlbertConfig

    config = AlbertConfig.preset(args.preset).to_dict()
    shapes = args.shape or [(64, 512), (128, 128)]
    impls = args.impl or list(IMPLEMENTATIONS)
    for _, seq in shapes:
        if seq > config["max_position_embeddings"]:
            parser.error(
                f"seq {seq} exceeds the preset's max_position_embeddings {config['max_position_embeddings']}"
            )
    results = []
    for batch, seq in shapes:
        for impl in impls:
            result = measure(args, impl, config, batch, seq)
            results.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "profile"}), flush=True)
            if args.json:  # written after each measurement, so a run cut short keeps what it measured
                add_ratios(results)
                Path(args.json).write_text(json.dumps({"preset": args.preset, "results": results}, indent=2))
    add_ratios(results)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": args.preset, "results": results}, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
