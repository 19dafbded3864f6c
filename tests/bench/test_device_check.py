"""bench/device_check.sh and bench/device_report.py: the GPU check's smoke run end to end on CPU (every
part measured without TensorFlow, one table with a row per part, what comes back within the device
machine's limits), the table built from canned part results, and the size accounting of `prepare`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench import device_report
from bench import pretrain_gain as gain

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "device_check.sh"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """One `bench/device_check.sh smoke` run, its results under a temporary OUT."""
    folder = tmp_path_factory.mktemp("device_check")
    out = folder / "out"
    # HF compiled is left out (bench/train_throughput.py's own test runs it) and the bundled samples
    # stand in for the shared data, as in CI: the smoke checks the script's logic, not the figures.
    env = {
        **os.environ,
        "OUT": str(out),
        "TMPDIR": str(folder),
        "DEVICE_CHECK_HF": "0",
        "DEVICE_CHECK_DATA": str(folder / "absent"),
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), "smoke"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((out / "device_check.json").read_text())
    return {"out": out, "stdout": result.stdout, "record": record}


def _table(stdout: str) -> list[list[str]]:
    """The cells of the final table's rows (after its header and separator)."""
    lines = stdout[stdout.rindex("| part | implementation |") :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.slow
def test_smoke_ends_with_one_table_with_a_measured_row_per_part(smoke):
    rows = _table(smoke["stdout"])
    parts = [row[0] for row in rows]
    assert parts == ["(a) Trainer", "(b) step", "(c) gain"]  # HF compiled left out (DEVICE_CHECK_HF=0)
    for row in rows:
        assert row[2] == ("8 x 64" if row[0] == "(c) gain" else "4 x 64"), row
        assert float(row[3].replace(",", "")) > 0, row
        assert row[-1].startswith("ok"), row
    record = smoke["record"]
    assert record["failed"] == [] and {p["exit"] for p in record["parts"].values()} == {0}
    assert record["versions"]["tensorflow"] == "absent"  # the parts ran as on the GPU machine
    (trainer,), ours = record["trainer_steps"], record["train_throughput"]["results"][0]
    ratio = trainer["sequences_per_second"] / ours["sequences_per_second"]
    assert rows[0][5] == f"{ratio:.2f}x library" and rows[0][6].startswith(">= 0.95x library: ")
    pretraining = record["gain"]["pretraining"]
    assert f"{pretraining['steps']} steps in {pretraining['training_seconds']} s" in rows[-1][-1]
    assert "held-out MLM" in rows[-1][-1] and "SOP" in rows[-1][-1]


@pytest.mark.slow
def test_smoke_results_fit_what_the_device_machine_sends_back_and_the_model_loads(smoke):
    out = smoke["out"]
    files = [f for f in out.rglob("*") if f.is_file()]
    assert len(files) <= 8
    assert all(len(f.relative_to(out).parts) <= 3 for f in files)  # $OUT/a/b/file at the deepest
    assert all(f.stat().st_size <= gain.MAX_WEIGHT_FILE_BYTES for f in files)
    assert not (out / "gain" / gain.MODEL_FILE).exists()  # the one-file model stays on the machine
    weights = sorted((out / "gain" / gain.WEIGHTS_DIR).iterdir())
    assert (out / "gain" / gain.WEIGHTS_DIR / gain.WEIGHTS_INDEX) in weights and len(weights) >= 2
    report = json.loads((out / "gain" / gain.REPORT_FILE).read_text())
    assert report["rows_skipped"] is True and report["tasks"] == {}
    model = gain.load_sharded_pretrainer(out / "gain")
    assert model.count_params() == report["model"]["parameters"]
    assert (out / "gain" / gain.SPM_FILE).stat().st_size > 0


# -- the report on canned part results ---------------------------------------------------------------


def _throughput(impl: str, batch: int, seq: int, rate: float) -> dict:
    return {"impl": impl, "batch": batch, "seq": seq, "sequences_per_second": rate, "share_of_peak": 0.3}


def _canned_work(work: Path, parts: str) -> None:
    work.mkdir(parents=True)
    trainer = [
        {"backend": "jax", "preset": "base", "batch": 64, "seq": 512, "precision": "mixed_bfloat16"}
        | {"sequences_per_second": 1200.0},
        {"backend": "jax", "preset": "base", "batch": 128, "seq": 128, "precision": "mixed_bfloat16"}
        | {"sequences_per_second": 4000.0},
    ]
    throughput = {
        "preset": "base",
        "results": [
            _throughput("ours", 64, 512, 1250.0),
            _throughput("hf-compile", 64, 512, 900.0),
            _throughput("ours", 128, 128, 5000.0),
            {"impl": "hf-compile", "batch": 128, "seq": 128, "error": "exit 1: boom\nRuntimeError: CUDA OOM"},
        ],
    }
    (work / "trainer_steps.json").write_text(json.dumps(trainer))
    (work / "train_throughput.json").write_text(json.dumps(throughput))
    (work / "parts.txt").write_text(parts)
    (work / "throughput.log").write_text("line\n" * 100 + "RuntimeError: CUDA OOM\n")
    (work / "nvidia-smi.txt").write_text("GPU 0: NVIDIA H200 (UUID: GPU-0)\n")


def test_report_rates_each_part_against_its_goal_and_the_h100_figures(tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "out" / "device_check.json"
    _canned_work(work, "trainer 0 80\nthroughput 1 170\ngain 124 240\n")
    assert device_report.report(work, out, "device") == 1
    printed = capsys.readouterr().out
    rows = _table(printed)
    assert [row[0] for row in rows] == ["(a) Trainer"] * 2 + ["(b) step"] * 4 + ["(c) gain"]
    trainer_512, trainer_128 = rows[0], rows[1]
    assert trainer_512[5:7] == ["0.96x library", ">= 0.95x library: met"]  # 1200 / 1250
    assert trainer_128[5:7] == ["0.80x library", ">= 0.95x library: NOT met"]  # 4000 / 5000
    assert trainer_512[4] == "28.8%"  # the library step's 30% of peak times 0.96: the same FLOPs
    ours_512, hf_512, ours_128, hf_128 = rows[2:6]
    assert ours_512[5:8] == ["1.39x HF compiled", ">= 1.30x HF compiled: met", "1,173"]
    assert hf_512[3] == "900.0" and hf_512[7] == "1,057" and hf_512[5] == ""
    assert ours_128[5] == "" and ours_128[7] == "4,845"  # no HF figure at 128 x 128 to divide by
    assert hf_128[-1] == "failed: RuntimeError: CUDA OOM" and hf_128[7] == "4,413"
    assert rows[6][-1] == "failed: exit 124 (timed out) after 240 s, no figures"
    assert "GPU 0: NVIDIA H200" in printed and "FAILED: throughput, gain" in printed

    record = json.loads(out.read_text())
    assert record["failed"] == ["throughput", "gain"]
    assert record["parts"]["trainer"] == {"exit": 0, "seconds": 80}
    assert record["failed_logs"]["throughput"][-1] == "RuntimeError: CUDA OOM"
    assert len(record["failed_logs"]["throughput"]) == device_report.LOG_LINES
    assert record["failed_logs"]["gain"] == []  # no log written


def test_report_says_which_part_never_ran(tmp_path, capsys):
    work = tmp_path / "work"
    _canned_work(work, "trainer 0 80\n")
    (work / "train_throughput.json").unlink()
    assert device_report.report(work, tmp_path / "record.json", "smoke") == 1
    rows = _table(capsys.readouterr().out)
    assert rows[2][:2] == ["(b) step", "library step and HF compiled"]
    assert rows[2][-1] == "not run, no figures" and rows[-1][-1] == "not run, no figures"
    assert rows[0][5] == "" and rows[0][4] == ""  # no library step to compare the Trainer with


# -- prepare's size accounting -----------------------------------------------------------------------


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_sizes_count_the_carried_paths_and_the_working_tree_that_travels(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / ".gitignore").write_text("/build/\n/.whl/\n")
    (root / "tracked.py").write_bytes(b"x" * 1000)
    _git(root, "add", ".gitignore", "tracked.py")
    (root / "untracked.txt").write_bytes(b"y" * 500)
    (root / "build" / "device" / "gain").mkdir(parents=True)
    (root / "build" / "device" / "gain" / "tokens.npz").write_bytes(b"z" * 3000)
    (root / "build" / "device" / "shards.parquet").write_bytes(b"z" * 2000)
    (root / "build" / "other.bin").write_bytes(b"n" * 9999)  # ignored, not carried: travels not
    (root / ".whl").mkdir()
    (root / ".whl" / "keras.whl").write_bytes(b"w" * 700)

    sizes = device_report.carried_sizes(root, [".whl", "build/device"])
    assert sizes["carry"] == {".whl": 700, "build/device": 5000}
    assert sizes["working_tree"] == 1000 + 500 + len("/build/\n/.whl/\n")
    assert sizes["total"] == sizes["working_tree"] + 5700 and sizes["fits"]
    assert "fits the 64.0 MiB transfer" in device_report.format_sizes(sizes)

    monkeypatch.setattr(device_report, "TRANSFER_LIMIT_BYTES", 5000)
    too_big = device_report.carried_sizes(root, [".whl", "build/device"])
    assert not too_big["fits"] and "DOES NOT FIT" in device_report.format_sizes(too_big)
    code = device_report.main(["sizes", "--root", str(root), "--carry", ".whl", "build/device"])
    assert code == 1


def test_unknown_mode_is_refused_with_the_usage():
    done = subprocess.run(["bash", str(SCRIPT), "gpu"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage: bench/device_check.sh [prepare|smoke]" in done.stderr
