"""Retention on an ML Metadata store shaped like a local run's (tests/pipeline/mlmd_builder.py) and a
serving directory of integer versions: what the policy removes goes, what later runs build on and
the versions that serve or roll back stay, a dry run touches nothing, and removed artifacts are
marked DELETED."""

from __future__ import annotations

import os

import pytest

from pipeline import history, retention
from pipeline.configs import PipelineConfig
from pipeline_runner import main
from tests.pipeline.mlmd_builder import Made, three_runs

#: The serving versions on disk: 100 is the last blessed model's (run A pushed it); 300 is the newest.
VERSIONS = ("90", "100", "150", "300")
#: What later runs build on, for the runs of `three_runs` (see pipeline/retention.py): the newest
#: tokenizer (C's) with its inputs, the newest pretrained model (C's) with its inputs, the last blessed
#: model (A's) with its blessing and inputs.
BUILT_ON = (
    "tokenizer_c", "examples_b", "tokenizer_a",
    "pretrained_c", "transformed_b", "pretrained_b",
    "finetuned_a", "blessing_a", "transformed_a", "pretrained_a", "graph_a",
)  # fmt: skip


def _with_serving(root):
    runs = three_runs(root)
    for version in VERSIONS:
        folder = root / "serving" / version
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"m" * 1000)
    return runs


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    """For the tests that change nothing (plans, dry runs): written once."""
    return _with_serving(tmp_path_factory.mktemp("retention"))


@pytest.fixture
def runs(tmp_path):
    """For the tests that prune or add runs."""
    return _with_serving(tmp_path)


def _config(runs, keep_runs: int, keep_versions: int) -> PipelineConfig:
    return PipelineConfig(
        output_dir=str(runs.builder.root), keep_pipeline_runs=keep_runs, keep_serving_versions=keep_versions
    )


def _serving(runs, version: str) -> str:
    return str(runs.builder.root / "serving" / version)


def _removed_ids(plan: retention.Plan) -> set[int]:
    return {r.artifact_id for r in plan.removals if r.artifact_id is not None}


def test_plan_removes_the_old_runs_artifacts_except_what_later_runs_build_on(shared_runs):
    plan = retention.plan(_config(shared_runs, keep_runs=1, keep_versions=0))
    ids = shared_runs.ids

    # Run C is kept with all it used; of A and B only what nothing builds on goes.
    assert _removed_ids(plan) == {ids["examples_a"], ids["evaluation_a"], ids["card_a"], ids["pushed_a"]}
    assert {r.path for r in plan.removals} == {shared_runs.builder.uris[i] for i in _removed_ids(plan)}
    assert all(r.size_bytes > 0 for r in plan.removals)
    assert {r.group for r in plan.removals} == {f"run {shared_runs.run_ids[0]}"}
    reasons = {k.path: k.why for k in plan.kept}
    assert reasons[shared_runs.builder.uris[ids["finetuned_a"]]].startswith("the last blessed model")
    assert reasons[shared_runs.builder.uris[ids["tokenizer_a"]]] == "input 'previous' of the newest tokenizer"


def test_the_newest_tokenizer_pretrained_and_blessed_models_stay_when_their_runs_are_not_kept(runs):
    builder, ids = runs.builder, runs.ids
    builder.start_run("2026-01-08T02:00:00.000001")
    builder.execute("ClinicalExampleGen", state="FAILED")

    plan = retention.prune(_config(runs, keep_runs=1, keep_versions=0))

    removed = _removed_ids(plan)
    assert removed.isdisjoint(ids[name] for name in BUILT_ON)
    for name in BUILT_ON:
        assert os.path.exists(builder.uris[ids[name]]), name
        assert builder.state(ids[name]) == "LIVE", name
    # C's fine-tuned model was not blessed: nothing builds on it.
    assert {ids["finetuned_c"], ids["blessing_c"], ids["tokenizer_b"], ids["graph_b"]} <= removed


def test_serving_keeps_the_newest_and_the_last_blessed_version(shared_runs):
    plan = retention.plan(_config(shared_runs, keep_runs=0, keep_versions=1))
    assert sorted(r.path for r in plan.removals) == sorted(
        [_serving(shared_runs, "90"), _serving(shared_runs, "150")]
    )
    assert all(r.artifact_id is None for r in plan.removals)
    reasons = {k.path: k.why for k in plan.kept}
    assert reasons[_serving(shared_runs, "300")] == "the newest version: TF Serving serves it"
    assert reasons[_serving(shared_runs, "100")] == "the last blessed model's version"

    plan = retention.plan(_config(shared_runs, keep_runs=0, keep_versions=2))
    assert [r.path for r in plan.removals] == [_serving(shared_runs, "90")]


def test_a_dry_run_removes_nothing_and_marks_nothing(shared_runs):
    plan = retention.prune(_config(shared_runs, keep_runs=1, keep_versions=1), dry_run=True)

    assert len(plan.removals) == 6 and not plan.applied
    assert "would remove 6 paths" in plan.format()
    for removal in plan.removals:
        assert os.path.exists(removal.path)
        if removal.artifact_id is not None:
            assert shared_runs.builder.state(removal.artifact_id) == "LIVE"


def test_prune_removes_the_paths_and_marks_their_artifacts_deleted(runs):
    config = _config(runs, keep_runs=1, keep_versions=1)
    plan = retention.prune(config)

    assert plan.applied and plan.format().splitlines()[2].startswith("removed 6 paths")
    for removal in plan.removals:
        assert not os.path.exists(removal.path)
        if removal.artifact_id is not None:
            assert runs.builder.state(removal.artifact_id) == "DELETED"
    assert sorted(os.listdir(runs.builder.root / "serving")) == ["100", "300"]
    assert runs.builder.state(runs.ids["finetuned_a"]) == "LIVE"
    # Deleted artifacts are not planned again.
    assert retention.prune(config).removals == ()


def test_keep_zero_keeps_everything(shared_runs):
    plan = retention.prune(_config(shared_runs, keep_runs=0, keep_versions=0))
    assert plan.removals == () and plan.kept == ()
    assert sorted(os.listdir(shared_runs.builder.root / "serving"), key=int) == list(VERSIONS)


def test_nothing_to_prune_when_there_are_fewer_runs_and_versions_than_kept(shared_runs):
    plan = retention.prune(_config(shared_runs, keep_runs=3, keep_versions=4))
    assert plan.removals == ()
    assert plan.format().endswith("nothing to remove")


def test_last_blessed_version_falls_back_to_the_newest_push(runs):
    builder = runs.builder
    builder.start_run("2026-01-08T02:00:00.000001")
    builder.execute(
        "Pusher",
        outputs={"pushed_model": Made("PushedModel", 10, {"pushed": 1, "pushed_version": "300"})},
    )
    record = history.read_record(str(builder.metadata_path), builder.pipeline)
    # The new push has no blessing input: the last push of a blessed model is still A's.
    assert retention.last_blessed_version(record) == "100"

    [blessing] = builder.store.get_artifacts_by_id([runs.ids["blessing_a"]])
    blessing.custom_properties["blessed"].int_value = 0
    builder.store.put_artifacts([blessing])
    record = history.read_record(str(builder.metadata_path), builder.pipeline)
    assert retention.last_blessed_version(record) == "300"


def test_prune_command_dry_run_prints_the_plan_and_removes_nothing(shared_runs, capsys):
    argv = ["prune", "--output-dir", str(shared_runs.builder.root), "--dry-run", "--why"]
    argv += ["--set", "keep_pipeline_runs=1", "--set", "keep_serving_versions=1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "would remove 6 paths" in out
    assert f"{_serving(shared_runs, '90')}  serving version" in out
    assert "the last blessed model's version" in out  # --why
    assert sorted(os.listdir(shared_runs.builder.root / "serving"), key=int) == list(VERSIONS)
