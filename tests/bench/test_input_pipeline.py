"""bench/input_pipeline.py with a tiny budget: every measurement gives a figure, the table and the JSON
show it, and the shards it makes cross a shuffle window. The figures themselves come from a full run."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from albert_keras.pretraining_shards import shard_info

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("input_pipeline", REPO / "bench" / "input_pipeline.py")
input_pipeline = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = input_pipeline  # its dataclasses look their module up there
spec.loader.exec_module(input_pipeline)

WINDOW = 256


def small_bench(folder: Path):
    vocab = input_pipeline.synthetic_vocabulary(word_pieces=400, continuations=200)
    documents = input_pipeline.synthetic_documents(10, vocab)
    return input_pipeline.Bench(documents, vocab, folder, seconds=0.3, warmup=0.1, shuffle_window=WINDOW)


def test_every_measurement_gives_a_figure(tmp_path, capsys):
    out = tmp_path / "input.json"
    argv = ["--seconds", "0.3", "--warmup", "0.1", "--documents", "10", "--shuffle-window", str(WINDOW)]
    assert input_pipeline.main([*argv, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["path"], r["seq"]) for r in rows] == [
        ("new", 128), ("new", 512), ("beam", 128), ("beam", 512), ("old", 128), ("old", 512)
    ]  # fmt: skip
    for r in rows:
        assert r["rate"] > 0 and (r["path"] == "beam" or r["rows"] > 0), r
    beam = [r for r in rows if r["path"] == "beam"]
    assert all(r["unit"] == "instances/s per core" and "10 documents" in r["notes"] for r in beam)
    for r, shape in zip(rows[:2], input_pipeline.SHAPES, strict=True):
        assert r["ratio_to_goal"] == pytest.approx(r["rate"] / shape.goal)
        assert r["instances"] == r["shards"] * r["distinct_instances"] >= 1.5 * WINDOW
    printed = capsys.readouterr().out
    assert "| shard reader | 128 | 128 |" in printed and "| shard reader | 512 | 64 |" in printed
    assert printed.count("the shard reader is") == 2


def test_shards_hold_each_distinct_instance_once_per_file(tmp_path):
    bench = small_bench(tmp_path)
    shape = input_pipeline.SHAPES[0]
    paths, distinct = bench.shards(shape)
    assert len(paths) == math.ceil(1.5 * WINDOW / distinct)
    assert {shard_info(p) for p in paths} == {(shape.seq, shape.max_predictions, distinct)}
    assert bench.shards(shape) == (paths, distinct)  # made once


def test_the_old_path_is_reported_unmeasured_without_tensorflow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as on the GPU image: importing it fails
    row = input_pipeline.measure_generator_path(small_bench(tmp_path), input_pipeline.SHAPES[1])
    assert row["error"].startswith("not measured:")
    assert f"| {row['name']} | 512 | | not measured:" in input_pipeline.report([row])
