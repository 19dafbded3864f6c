"""The one table that `bench/device_check.sh` ends with, and the sizes its `prepare` step prints.

    report   reads what the check's parts wrote into its work folder (trainer_steps.json,
             train_throughput.json, gain/pretrain_gain.json, parts.txt with each part's exit status and
             seconds, nvidia-smi.txt) and prints one table: a row per (part, implementation, shape) with
             sequences/s, share of the dense bf16 peak, the ratio its goal is about, the goal met or
             not, and the H100 figure of bench/RESULTS.md at the same shape; a part that failed or made
             no figure has a row that says so. It writes everything, with the device and versions and
             the last lines of each failed part's log, to one JSON file (`--out`).
    sizes    the bytes each path to carry takes, and the working tree that travels with them (tracked
             and untracked files that git does not ignore), against a 64 MiB transfer.

Standard library only: it runs on the GPU machine beside the parts, and here.

    python3 bench/device_report.py report --work WORK --out OUT/device_check.json
    .venv/bin/python bench/device_report.py sizes --carry .whl build/device
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: What the figures are measured against (the project's goals).
TRAINER_GOAL = 0.95  # the Trainer's train() at least this share of the library step, same shape
LIBRARY_GOAL = 1.3  # the library step at least this multiple of HF compiled, same shape
#: bench/RESULTS.md, one H100 (job A): sequences/s of the base preset by (implementation, batch, seq).
H100_REFERENCE = {
    ("ours", 64, 512): 1173.0,
    ("ours", 128, 128): 4845.0,
    ("hf-compile", 64, 512): 1057.0,
    ("hf-compile", 128, 128): 4413.0,
}
TRANSFER_LIMIT_BYTES = 64 * 2**20
PARTS = ("trainer", "throughput", "gain")
PART_TITLES = {"trainer": "(a) Trainer", "throughput": "(b) step", "gain": "(c) gain"}
PACKAGES = ("jax", "jaxlib", "keras", "torch", "transformers", "numpy", "pyarrow", "sentencepiece")
LOG_LINES = 40


# -- reading the parts -------------------------------------------------------------------------------


def read_parts(work: Path) -> dict[str, dict[str, int]]:
    """parts.txt: one line per part that ran, `NAME EXIT SECONDS`."""
    parts: dict[str, dict[str, int]] = {}
    path = work / "parts.txt"
    if path.is_file():
        for line in path.read_text().splitlines():
            name, code, seconds = line.split()
            parts[name] = {"exit": int(code), "seconds": int(seconds)}
    return parts


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _versions() -> dict[str, str]:
    """Python's and the packages' versions; TensorFlow's only to say whether it can be imported (absent
    on the GPU machine, and made unimportable by the smoke run)."""
    versions = {"python": platform.python_version()}
    versions["tensorflow"] = "importable" if importlib.util.find_spec("tensorflow") else "absent"
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _log_tail(work: Path, part: str) -> list[str]:
    path = work / f"{part}.log"
    if not path.is_file():
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_LINES:]


# -- the table ---------------------------------------------------------------------------------------


def _status(part: str, parts: dict[str, dict[str, int]]) -> str:
    if part not in parts:
        return "not run"
    code = parts[part]["exit"]
    if code == 0:
        return "ok"
    reason = " (timed out)" if code in (124, 137) else ""
    return f"failed: exit {code}{reason} after {parts[part]['seconds']} s"


def _against(ratio: float, goal: float, reference: str) -> tuple[str, str]:
    """The ratio cell and the goal cell: `ratio` x `reference`, and whether it reaches `goal`."""
    verdict = "met" if ratio >= goal else "NOT met"
    return f"{ratio:.2f}x {reference}", f">= {goal:.2f}x {reference}: {verdict}"


def build_rows(
    trainer: list[dict] | None,
    throughput: dict | None,
    gain: dict | None,
    parts: dict[str, dict[str, int]],
) -> list[dict[str, Any]]:
    """The table's rows, as dicts: part, what, shape, sequences/s, share of peak, ratio, goal, the H100
    figure and a status. Every part that ran has at least one row."""
    results = (throughput or {}).get("results", [])
    base = (throughput or {}).get("preset") == "base"
    ours = {(r["batch"], r["seq"]): r for r in results if r["impl"] == "ours" and "error" not in r}
    hf = {(r["batch"], r["seq"]): r for r in results if r["impl"] == "hf-compile" and "error" not in r}
    rows: list[dict[str, Any]] = []

    def row(part: str, what: str, batch: int | None, seq: int | None, **cells: Any) -> None:
        reference = H100_REFERENCE.get((cells.pop("impl", ""), batch, seq)) if base else None
        rows.append(
            {
                "part": part,
                "what": what,
                "shape": f"{batch} x {seq}" if batch else "",
                "sequences_per_second": cells.get("sequences_per_second"),
                "share_of_peak": cells.get("share_of_peak"),
                "ratio": cells.get("ratio", ""),
                "goal": cells.get("goal", ""),
                "h100": reference,
                "status": cells.get("status", "ok"),
            }
        )

    # (a) the Trainer's train(), against the library step at its shape
    status = _status("trainer", parts)
    for r in trainer or []:
        shape = (r["batch"], r["seq"])
        rate, library = r.get("sequences_per_second"), ours.get(shape)
        cells: dict[str, Any] = {"sequences_per_second": rate, "status": status if rate else "no timing"}
        if rate and library:
            ratio = rate / library["sequences_per_second"]
            if library.get("share_of_peak") is not None:
                cells["share_of_peak"] = library["share_of_peak"] * ratio  # the same model, the same FLOPs
            cells["ratio"], cells["goal"] = _against(ratio, TRAINER_GOAL, "library")
        row("trainer", f"Trainer train(), {r['backend']}, {r['precision']}, LAMB", *shape, **cells)
    if not trainer:
        row("trainer", "Trainer train() on Parquet shards", None, None, status=status + ", no figures")

    # (b) the library step and HF compiled
    status = _status("throughput", parts)
    for r in results:
        shape = (r["batch"], r["seq"])
        what = "library step, jax, AdamW" if r["impl"] == "ours" else f"HF {r['impl']}, AdamW"
        if "error" in r:
            error = r["error"].strip().splitlines()[-1][:90] if r["error"].strip() else "error"
            row("throughput", what, *shape, impl=r["impl"], status=f"failed: {error}")
            continue
        cells = {
            "impl": r["impl"],
            "sequences_per_second": r["sequences_per_second"],
            "share_of_peak": r.get("share_of_peak"),
            "status": status,
        }
        if r["impl"] == "ours" and shape in hf:
            ratio = r["sequences_per_second"] / hf[shape]["sequences_per_second"]
            cells["ratio"], cells["goal"] = _against(ratio, LIBRARY_GOAL, "HF compiled")
        row("throughput", what, *shape, **cells)
    if not results:
        row("throughput", "library step and HF compiled", None, None, status=status + ", no figures")

    # (c) the gain pretraining
    status = _status("gain", parts)
    pretraining = (gain or {}).get("pretraining")
    if pretraining:
        last = pretraining["curve"][-1]
        mlm, sop = last["mlm_accuracy"]["value"], last["sop_accuracy"]["value"]
        seconds = pretraining["training_seconds"]
        rate = pretraining["steps"] * pretraining["batch_size"] / seconds if seconds else None
        row(
            "gain",
            f"pretraining, {gain['model']['parameters']:,} parameters, {pretraining['precision_policy']}",
            pretraining["batch_size"],
            pretraining["seq_length"],
            sequences_per_second=rate,
            status=(
                f"{status}: {pretraining['steps']} steps in {seconds} s (budget "
                f"{pretraining['budget_minutes']:g} min); held-out MLM {mlm:.3f}, SOP {sop:.3f} "
                f"(majority {pretraining['heldout_sop_majority']:.3f})"
            ),
        )
    else:
        row("gain", "pretraining for the downstream gain", None, None, status=status + ", no figures")
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("part", "implementation", "batch x seq", "sequences/s", "share of peak", "ratio", "goal")
    header += ("H100 seq/s (RESULTS.md)", "status")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        rate = f"{r['sequences_per_second']:,.1f}" if r["sequences_per_second"] else ""
        share = f"{100 * r['share_of_peak']:.1f}%" if r["share_of_peak"] is not None else ""
        reference = f"{r['h100']:,.0f}" if r["h100"] else ""
        cells = (PART_TITLES[r["part"]], r["what"], r["shape"], rate, share, r["ratio"], r["goal"], reference)
        lines.append("| " + " | ".join((*cells, r["status"])) + " |")
    return "\n".join(lines)


def report(work: Path, out: Path, mode: str) -> int:
    """Prints the table and the lines around it; writes everything to `out`. Returns 1 where a part
    failed or made no figure, else 0."""
    parts = read_parts(work)
    trainer, throughput = _json(work / "trainer_steps.json"), _json(work / "train_throughput.json")
    gain = _json(work / "gain" / "pretrain_gain.json")
    rows = build_rows(trainer, throughput, gain, parts)
    devices = (work / "nvidia-smi.txt").read_text().strip() if (work / "nvidia-smi.txt").is_file() else ""
    versions = _versions()
    failed = [p for p in PARTS if parts.get(p, {}).get("exit", 1) != 0]
    failed += [r["part"] for r in rows if r["part"] not in failed and r["status"].endswith("no figures")]
    timing = ", ".join(f"{name} {p['seconds']} s (exit {p['exit']})" for name, p in parts.items())
    print(f"\n== device check ({mode}): {devices or 'no NVIDIA device'}")
    print(", ".join(f"{name} {version}" for name, version in versions.items()))
    print(format_table(rows))
    print(f"parts: {timing or 'none ran'}; total {sum(p['seconds'] for p in parts.values())} s")
    if failed:
        print(f"FAILED: {', '.join(failed)} (the last lines of each failed part's log are in {out.name})")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "mode": mode,
        "devices": devices,
        "versions": versions,
        "parts": parts,
        "table": rows,
        "trainer_steps": trainer,
        "train_throughput": throughput,
        "gain": gain,
        "failed": failed,
        "failed_logs": {part: _log_tail(work, part) for part in failed},
    }
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 1 if failed else 0


# -- sizes -------------------------------------------------------------------------------------------


def tree_bytes(path: Path) -> int:
    """Bytes of the files under `path` (or of `path` itself), links not followed."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        total += sum((Path(folder) / name).lstat().st_size for name in files)
    return total


def working_tree_files(root: Path) -> list[Path]:
    """What the device machine's copy takes besides `carry`: tracked files and untracked files that git
    does not ignore (those present)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    paths = {root / name for name in listed.decode("utf-8", "surrogateescape").split("\0") if name}
    return sorted(p for p in paths if p.is_file() and not p.is_symlink())


def carried_sizes(root: Path, carry: Sequence[str]) -> dict[str, Any]:
    """Bytes of each carried path, of the working tree, and their total against the 64 MiB limit."""
    carried = {name: tree_bytes(root / name) for name in carry}
    tree = sum(p.stat().st_size for p in working_tree_files(root))
    total = tree + sum(carried.values())
    return {
        "carry": carried,
        "working_tree": tree,
        "total": total,
        "limit": TRANSFER_LIMIT_BYTES,
        "fits": total <= TRANSFER_LIMIT_BYTES,
    }


def format_sizes(sizes: dict[str, Any]) -> str:
    def mib(count: int) -> str:
        return f"{count / 2**20:.1f} MiB"

    lines = [f"  {name:<28}{mib(count):>12}" for name, count in sizes["carry"].items()]
    lines.append(f"  {'working tree (not ignored)':<28}{mib(sizes['working_tree']):>12}")
    verdict = "fits" if sizes["fits"] else "DOES NOT FIT"
    lines.append(f"  {'total':<28}{mib(sizes['total']):>12}  ({verdict} the {mib(sizes['limit'])} transfer)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("report", help="print the table; write the JSON")
    table.add_argument("--work", required=True, help="the check's work folder")
    table.add_argument("--out", required=True, help="the JSON to write")
    table.add_argument("--mode", default="device", help="printed in the header (device, smoke)")
    sizes = commands.add_parser("sizes", help="bytes to carry")
    sizes.add_argument("--carry", nargs="+", required=True, help="paths relative to --root")
    sizes.add_argument("--root", default=".", help="the repository root")
    args = parser.parse_args(argv)
    if args.command == "report":
        return report(Path(args.work), Path(args.out), args.mode)
    measured = carried_sizes(Path(args.root), args.carry)
    print(format_sizes(measured))
    return 0 if measured["fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
