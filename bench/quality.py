"""Quality benchmark: what ALBERT fine-tuned through the project's recipe reaches on four public clinical /
biomedical tasks, beside a majority baseline, a classic baseline and the published figures, in one
run, one table, every figure with a 95% bootstrap interval over the test split's units.

    task               data (../shared/data)                   metrics (primary first)
    mtsamples_multi    MTSamples, a note's specialties         micro-F1, multi-label macro-F1
    mtsamples_single   MTSamples notes with one specialty      macro-F1, accuracy
    ncbi_disease       NCBI-disease CoNLL, BLURB (Disease)     entity F1 (conlleval, words), P, R
    pubmedqa           PubMedQA PQA-L, official 500 test       accuracy, macro-F1

    row                   what
    majority              most frequent class / labels; all-O for NER (quality_baselines.py)
    classic               TF-IDF + logistic regression, C chosen on eval; CRF for NER
    albert_scratch        ALBERT from random init, `albert_keras.finetune_loop.finetune` (recipe "best")
    albert_scratch_plain  the same steps with recipe "plain": no warmup, no evaluation, last step kept
    albert_init           as albert_scratch from `--init` (a .keras AlbertPretrainer with spm.model
                          beside it, or a HF ALBERT directory with spiece.model); else "not run"

How data are read and split: quality_data.py. Tokenization, windows and training: quality_albert.py.
Every metric is `components/scores.py`'s, the Evaluator's own (quality_metrics.py); multi-label
thresholds are chosen on eval (`components/thresholds.py`) and applied on test.

    .venv/bin/python bench/quality.py --budget smoke                       # about 2 minutes
    .venv/bin/python bench/quality.py --budget cpu --out quality_cpu.json  # 2 CPU cores: about 31 min
    KERAS_BACKEND=jax python3 bench/quality.py --budget gpu --out quality_gpu.json  # one GPU, no TF

Budgets: smoke caps each split (200/40/60 units) and trains a tiny model 6 steps; cpu reads all the
data and trains a small ALBERT (E 128, H 256, 4 layers, seq 128, pairs 256) 300-400 steps per task,
2.5 to 6 minutes a row on two cores; gpu trains an albert-base-shaped model on seq 512 in bfloat16.
On CPU the TensorFlow backend trains this model about 1.8x faster than JAX (0.51 against 0.90 s a
step at 32 x 128 on two cores), so the cpu budget is meant for the default backend. Under
KERAS_BACKEND=jax nothing on the ALBERT path imports TensorFlow; a machine without TensorFlow needs
keras (with namex and optree) on its path, and a row whose optional package is missing there
(sklearn-crfsuite for the CRF) reads "not run". Where ../shared/data (or `--data`) lacks a dataset the
bundled sample in data/sample stands in, and the table's header says so. `--rows` and `--tasks` run
a part; `--init PATH` adds the pretrained row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import quality_metrics as metrics  # noqa: E402
from bench.quality_baselines import ClassicSettings, Predictions, classic, majority  # noqa: E402
from bench.quality_data import TASKS, TaskData, find_sources, load_tasks  # noqa: E402

DEFAULT_DATA = "../shared/data"
ROWS = ("majority", "classic", "albert_scratch", "albert_scratch_plain", "albert_init")
#: Baseline packages a machine may lack (the GPU machine has no sklearn-crfsuite): their rows are "not run".
OPTIONAL_MODULES = ("sklearn_crfsuite", "pycrfsuite", "sklearn", "scipy")

TITLES = {
    "mtsamples_multi": "MTSamples specialties, multi-label (a note's set of specialties)",
    "mtsamples_single": "MTSamples specialty, single-label (notes with exactly one specialty)",
    "ncbi_disease": "NCBI-disease NER, BLURB setting (one type: Disease)",
    "pubmedqa": "PubMedQA (PQA-L), question + context -> yes/no/maybe",
}
UNITS = {
    "mtsamples_multi": "notes",
    "mtsamples_single": "notes",
    "ncbi_disease": "sentences",
    "pubmedqa": "questions",
}
#: Published figures on the task's primary metric, as fractions; with where they come from.
ANCHORS: dict[str, list[tuple[str, float | None, str]]] = {
    "mtsamples_multi": [("no published figure", None, "for the multi-label reading of MTSamples")],
    "mtsamples_single": [
        (
            "CLiGNet",
            0.279,
            "macro-F1, leakage-free 40-class MTSamples (Barman & Barman 2026; 4,966 rows with row-level "
            "labels, so not the same notes as here)",
        )
    ],
    "ncbi_disease": [
        ("BioBERT", 0.891, "entity F1 (Gu et al. 2021, BLURB Table 6)"),
        ("PubMedBERT", 0.878, "entity F1 (Gu et al. 2021, BLURB Table 6)"),
    ],
    "pubmedqa": [
        ("BioBERT", 0.681, "accuracy, reasoning-required (Jin et al. 2019)"),
        ("majority", 0.552, "accuracy (Jin et al. 2019)"),
    ],
}
#: The dataset whose train split trains each task's tokenizer: both MTSamples tasks share one, trained
#: on mtsamples_multi's train notes (a superset of mtsamples_single's, split by the same rule).
TOKENIZER_CORPUS = {
    "mtsamples_multi": "mtsamples_multi",
    "mtsamples_single": "mtsamples_multi",
    "ncbi_disease": "ncbi_disease",
    "pubmedqa": "pubmedqa",
}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much of the data each row reads and how long the ALBERT rows train."""

    name: str
    caps: dict[str, int] | None
    bootstrap_samples: int
    classic: ClassicSettings
    albert: Any  # quality_albert.AlbertSettings; built lazily so that baselines import no Keras


def budget(name: str) -> Budget:
    from bench.quality_albert import AlbertSettings

    kinds = ("multi_label", "single_label", "pair", "entities")
    if name == "smoke":
        return Budget(
            name,
            caps={"train": 200, "eval": 40, "test": 60},
            bootstrap_samples=200,
            classic=ClassicSettings(c_grid=(1.0, 10.0), max_features=20_000, crf_iterations=20),
            albert=AlbertSettings(
                model="tiny",
                seq_length=dict.fromkeys(kinds, 64),
                batch_size=dict.fromkeys(kinds, 8),
                steps=dict.fromkeys(kinds, 6),
                vocab_size=400,
                evals=2,
                patience=0,
                max_windows=4,
                learning_rate=1e-3,
            ),
        )
    if name == "cpu":
        return Budget(
            name,
            caps=None,
            bootstrap_samples=1000,
            classic=ClassicSettings(),
            albert=AlbertSettings(
                model="small",
                seq_length={"multi_label": 128, "single_label": 128, "pair": 256, "entities": 128},
                batch_size={"multi_label": 32, "single_label": 32, "pair": 16, "entities": 32},
                steps={"multi_label": 400, "single_label": 300, "pair": 400, "entities": 400},
                vocab_size=8000,
                evals=5,
                patience=3,
                max_windows=64,
                learning_rate=5e-4,
            ),
        )
    if name == "gpu":
        return Budget(
            name,
            caps=None,
            bootstrap_samples=1000,
            classic=ClassicSettings(),
            albert=AlbertSettings(
                model="base",
                seq_length={"multi_label": 512, "single_label": 512, "pair": 512, "entities": 256},
                batch_size=dict.fromkeys(kinds, 32),
                steps={"multi_label": 600, "single_label": 300, "pair": 300, "entities": 600},
                vocab_size=16000,
                evals=6,
                patience=3,
                max_windows=64,
                learning_rate=1e-4,
                mixed_precision=True,
            ),
        )
    raise ValueError(f"unknown budget {name!r}: smoke, cpu or gpu")


# -- running -----------------------------------------------------------------------------------------


def tokenizer_texts(task: TaskData) -> list[str]:
    """The train split's texts: notes, questions and passages, or sentences as their words joined."""
    train = task.splits["train"]
    if task.kind == "entities":
        return [" ".join(sentence.words) for sentence in train]
    return [e.text for e in train] + [e.text_b for e in train if e.text_b]


def _failure(error: BaseException) -> str:
    """A failed row's reason: the error's type and message (cut short), never data."""
    return f"failed: {type(error).__name__}: {str(error)[:200]}"


def run_row(row: str, task: TaskData, chosen: Budget, context: dict[str, Any]) -> dict[str, Any]:
    """One row on one task: its test figures with intervals, its eval figure, wall time and choices."""
    if row == "albert_init" and context["init"] is None:
        return {"status": "not run (no --init)"}
    if row not in context["rows"]:
        return {"status": "not run (--rows)"}
    try:
        if row in ("albert_scratch", "albert_scratch_plain"):
            _scratch_tokenizer(task.name, chosen, context)  # once per dataset, timed apart from the rows
        started = time.perf_counter()
        predictions = _predict(row, task, chosen, context)
    except Exception as error:
        if isinstance(error, ImportError) and error.name in OPTIONAL_MODULES:
            return {"status": f"not run ({error.name} not installed)"}
        traceback.print_exc(limit=3, file=sys.stderr)
        context["failures"] += 1
        return {"status": _failure(error)}
    wall = time.perf_counter() - started
    num_labels = len(task.label_names)
    test_gold = metrics.gold_of(task, "test")
    eval_gold = metrics.gold_of(task, "eval")
    return {
        "status": "ok",
        "metrics": metrics.scored(
            task.kind, test_gold, predictions.test, num_labels, chosen.bootstrap_samples
        ),
        "eval": metrics.point_scores(task.kind, eval_gold, predictions.eval, num_labels),
        "wall_s": round(wall, 1),
        "details": predictions.details,
    }


def _predict(row: str, task: TaskData, chosen: Budget, context: dict[str, Any]) -> Predictions:
    if row == "majority":
        return majority(task)
    if row == "classic":
        return classic(task, chosen.classic)
    from bench.quality_albert import run_albert

    if row == "albert_init":
        return run_albert(
            task,
            context["init_tokenizer"],
            chosen.albert,
            init=context["init"],
            encoded_cache=context["encoded"],
        )
    tokenizer = _scratch_tokenizer(task.name, chosen, context)
    recipe = "plain" if row == "albert_scratch_plain" else "best"
    return run_albert(task, tokenizer, chosen.albert, recipe=recipe, encoded_cache=context["encoded"])


def _scratch_tokenizer(name: str, chosen: Budget, context: dict[str, Any]) -> Any:
    """The SentencePiece model trained on the task's tokenizer corpus, trained once per run."""
    from bench.quality_albert import Tokenizer

    corpus = TOKENIZER_CORPUS[name]
    if corpus not in context["tokenizers"]:
        started = time.perf_counter()
        tokenizer = Tokenizer.train(tokenizer_texts(context["all_tasks"][corpus]), chosen.albert.vocab_size)
        tokenizer.origin = f"trained on {corpus} train"
        context["tokenizers"][corpus] = tokenizer
        context["tokenizer_report"][corpus] = {
            "vocab_size": tokenizer.vocab_size,
            "seconds": round(time.perf_counter() - started, 1),
        }
    return context["tokenizers"][corpus]


def comparisons(task_name: str, kind: str, rows: dict[str, dict]) -> list[str]:
    """Plain sentences on where ALBERT stands against the classic row, and what the recipe gains."""
    metric = metrics.primary(kind)

    def figure(row: str) -> dict | None:
        result = rows.get(row, {})
        return result["metrics"][metric] if result.get("status") == "ok" else None

    lines = []
    classic_figure = figure("classic")
    for row in ("albert_scratch", "albert_scratch_plain", "albert_init"):
        ours = figure(row)
        if ours is None or classic_figure is None:
            continue
        gap = ours["value"] - classic_figure["value"]
        overlap = ours["low"] <= classic_figure["high"] and classic_figure["low"] <= ours["high"]
        where = "below" if gap < 0 else "above" if gap > 0 else "level with"
        lines.append(
            f"{row} is {abs(gap):.2f} {where} classic on {task_name} ({metric} {ours['value']:.3f} vs "
            f"{classic_figure['value']:.3f}; the intervals {'overlap' if overlap else 'do not overlap'})"
        )
    best, plain = figure("albert_scratch"), figure("albert_scratch_plain")
    if best is not None and plain is not None:
        lines.append(
            f"recipe: albert_scratch (warmup, best eval checkpoint) {best['value'] - plain['value']:+.3f} "
            f"{metric} against albert_scratch_plain (same steps, last step)"
        )
    return lines


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    chosen = budget(args.budget)
    sources = find_sources(args.data)
    task_names = [t for t in TASKS if t in args.tasks]
    needed = set(task_names) | {TOKENIZER_CORPUS[name] for name in task_names}
    all_tasks = {name: task.capped(chosen.caps) for name, task in load_tasks(sources, needed).items()}
    context: dict[str, Any] = {
        "rows": set(args.rows),
        "init": None,
        "all_tasks": all_tasks,
        "tokenizers": {},
        "tokenizer_report": {},
        "encoded": {},
        "failures": 0,
    }
    if args.init:
        from bench.quality_albert import InitCheckpoint

        init = InitCheckpoint(args.init, args.init_tokenizer)
        context.update(init=init, init_tokenizer=init.load_tokenizer())
    report: dict[str, Any] = {
        "budget": chosen.name,
        "keras_backend": os.environ.get("KERAS_BACKEND", "(keras.json)"),
        "data": {
            "root": args.data,
            "bundled_samples_for": sorted(name for name, bundled in sources.bundled.items() if bundled),
        },
        "bootstrap": {"samples": chosen.bootstrap_samples, "confidence": 0.95, "seed": 0},
        "init": Path(args.init).name if args.init else None,
        "tasks": {},
    }
    for name in task_names:
        task = all_tasks[name]
        print(f"[{name}] {task.counts()} {UNITS[name]}", file=sys.stderr, flush=True)
        rows = {}
        for row in ROWS:
            rows[row] = run_row(row, task, chosen, context)
            shown = rows[row].get("wall_s", "")
            print(f"[{name}] {row}: {rows[row]['status']} {shown}", file=sys.stderr, flush=True)
        report["tasks"][name] = {
            "title": TITLES[name],
            "kind": task.kind,
            "metrics": list(metrics.METRICS[task.kind]),
            "labels": len(task.label_names),
            "units": {"name": UNITS[name], **task.counts()},
            "source": task.source,
            "bundled": task.bundled,
            "anchors": [{"name": n, "value": v, "what": w} for n, v, w in ANCHORS[name]],
            "rows": rows,
            "comparisons": comparisons(name, task.kind, rows),
        }
    report["tokenizers"] = context["tokenizer_report"]
    if "keras" in sys.modules:
        report["keras_backend"] = sys.modules["keras"].backend.backend()
    report["failures"] = context["failures"]
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


# -- the table ---------------------------------------------------------------------------------------


def _cell(figure: dict[str, float]) -> str:
    if math.isnan(figure["low"]):
        return f"{figure['value']:.3f}"
    return f"{figure['value']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"


def format_table(report: dict[str, Any]) -> str:
    """The printed table: a header, then per task its rows, anchors and comparisons."""
    lines = [
        f"Quality benchmark, budget {report['budget']}, Keras backend {report['keras_backend']}; "
        f"95% bootstrap intervals over the test split's units ({report['bootstrap']['samples']} resamples)",
    ]
    bundled = report["data"]["bundled_samples_for"]
    if bundled:
        lines.append(
            f"DATA: {report['data']['root']} lacks {', '.join(bundled)}: using the bundled samples in "
            "data/sample for them; these figures are not comparable with the published ones"
        )
    else:
        lines.append(f"data: {report['data']['root']} (full public data)")
    for name, task in report["tasks"].items():
        names = task["metrics"]
        units = task["units"]
        lines += [
            "",
            f"== {name}: {task['title']}",
            f"   {task['source']}; {units['train']}/{units['eval']}/{units['test']} train/eval/test "
            f"{units['name']}, {task['labels']} labels",
        ]
        header = (
            f"   {'row':<21}" + "".join(f"{m:<25}" for m in names) + f"{'eval ' + names[0]:<22}{'wall':>8}"
        )
        lines.append(header)
        for row, result in task["rows"].items():
            if result["status"] != "ok":
                lines.append(f"   {row:<21}{result['status']}")
                continue
            cells = "".join(f"{_cell(result['metrics'][m]):<25}" for m in names)
            lines.append(f"   {row:<21}{cells}{result['eval'][names[0]]:<22.3f}{result['wall_s']:>7.1f}s")
        for anchor in task["anchors"]:
            value = "" if anchor["value"] is None else f"{anchor['value']:.3f} "
            lines.append(f"   published: {anchor['name']} {value}({anchor['what']})")
        lines += [f"   ! {line}" if " below " in line else f"   {line}" for line in task["comparisons"]]
    if report["tokenizers"]:
        trained = ", ".join(
            f"{name} {t['vocab_size']} pieces in {t['seconds']} s" for name, t in report["tokenizers"].items()
        )
        lines += ["", f"SentencePiece models trained on train splits (not in the rows' wall time): {trained}"]
    lines.append(f"total wall time {report['wall_s']:.0f} s")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", choices=("smoke", "cpu", "gpu"), default="smoke")
    parser.add_argument("--data", default=DEFAULT_DATA, help="the shared data folder (default %(default)s)")
    parser.add_argument("--out", help="also write the report as JSON here")
    parser.add_argument("--init", help="a .keras AlbertPretrainer file or a HF ALBERT checkpoint directory")
    parser.add_argument("--init-tokenizer", help="the SentencePiece model of --init, if not beside it")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument(
        "--rows", nargs="+", choices=ROWS, default=list(ROWS), help="rows to run (default all)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"{args.data} is missing: the bundled samples in data/sample stand in for it", file=sys.stderr)
    report = run(args)
    print(format_table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
