"""`runs` and `show`: past runs read from an ML Metadata store shaped like a local run's (three runs:
blessed and pushed, failed, partly cached and not blessed; tests/pipeline/mlmd_builder.py)."""

from __future__ import annotations

import pytest

from pipeline import history
from pipeline_runner import main
from tests.pipeline.mlmd_builder import PIPELINE, Made, StoreBuilder, three_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Read by every test; the one that adds runs writes its own."""
    return three_runs(tmp_path_factory.mktemp("history"))


def test_runs_are_listed_newest_first_with_state_blessing_metric_and_push(runs):
    summaries = history.list_runs(str(runs.builder.metadata_path), PIPELINE)

    assert [s.run_id for s in summaries] == runs.run_ids[::-1]
    assert [s.state for s in summaries] == ["complete", "failed", "complete"]
    assert [s.blessed for s in summaries] == [False, None, True]
    assert [s.pushed_version for s in summaries] == [None, None, "100"]
    assert [(s.metric, s.metric_value) for s in summaries] == [
        ("micro_f1", 0.26),
        (None, None),
        ("micro_f1", 0.31),
    ]
    assert all(s.duration_s >= 0 for s in summaries)


def test_runs_table_is_aligned_one_run_a_line(runs):
    table = history.format_runs(history.list_runs(str(runs.builder.metadata_path), PIPELINE))
    header, *rows = table.splitlines()

    assert len(rows) == 3
    assert rows[0].startswith(runs.run_ids[2])
    # Every column starts where its header does.
    for column, cell_of_last_row in (("STATE", "complete"), ("METRIC", "micro_f1 0.310"), ("BLESSED", "yes")):
        assert rows[2].index(cell_of_last_row) == header.index(column)
    assert rows[1].split()[-2:] == ["-", "-"]  # the failed run: no blessing, no push
    assert rows[2].split()[-2:] == ["yes", "100"]


def test_an_unfinished_run_is_running_when_newest_and_interrupted_once_a_newer_one_exists(tmp_path):
    builder = three_runs(tmp_path).builder
    builder.start_run("2026-01-08T02:00:00.000001")
    builder.execute("ClinicalExampleGen", state="RUNNING")
    path = str(builder.metadata_path)
    assert history.list_runs(path, PIPELINE)[0].state == "running"

    builder.start_run("2026-01-09T02:00:00.000001")
    builder.execute("ClinicalExampleGen", state="COMPLETE", outputs={"examples": Made("Examples")})
    states = [s.state for s in history.list_runs(path, PIPELINE)]
    # The newest stopped before the Pusher: still running; the one before never finished.
    assert states[:2] == ["running", "interrupted"]


def test_show_prints_the_lineage_of_a_partly_cached_run(runs):
    uris, ids = runs.builder.uris, runs.ids
    text = history.show_run(str(runs.builder.metadata_path), PIPELINE, runs.run_ids[2])
    lines = text.splitlines()

    assert lines[0].startswith(f"run {runs.run_ids[2]}: complete")
    # The cached ExampleGen recorded no fingerprint: it comes from the execution that made the examples.
    assert "corpus (ClinicalExampleGen: cached)" in lines
    assert "  fingerprint 3 files, sha256 bbb222" in lines
    assert "  input notes/{SPAN}/" in lines
    assert f"  examples {uris[ids['examples_b']]}" in lines
    assert "  span 2 (version 1)" in lines
    assert "tokenizer (SentencePieceTokenizer: ran)" in lines
    assert f"  {uris[ids['tokenizer_c']]}" in lines
    assert "  vocabulary 2000, <unk> rate 0.0007, vocabulary version 1" in lines
    assert f"  reused the vocabulary of {uris[ids['tokenizer_a']]}" in lines
    assert f"  {uris[ids['pretrained_c']]}" in lines
    assert f"  continued from {uris[ids['pretrained_b']]}" in lines
    assert f"  {uris[ids['finetuned_c']]}" in lines
    assert f"  base model {uris[ids['pretrained_c']]}" in lines
    assert f"  warm start from {uris[ids['finetuned_a']]}" in lines
    assert "  not blessed, micro_f1 0.260" in lines
    assert f"  baseline {uris[ids['finetuned_a']]}" in lines
    assert "push (Pusher: ran)" in lines
    assert "  not pushed" in lines


def test_show_names_the_push_and_the_failed_node(runs):
    path = str(runs.builder.metadata_path)
    first = history.show_run(path, PIPELINE, runs.run_ids[0]).splitlines()
    assert "  blessed, micro_f1 0.310" in first
    assert "  version 100 (since removed)" in first  # the test wrote no serving folder
    assert f"  destination {runs.builder.root / 'serving' / '100'}" in first

    failed = history.show_run(path, PIPELINE, runs.run_ids[1]).splitlines()
    assert failed[0].startswith(f"run {runs.run_ids[1]}: failed")
    assert "failed: finetune" in failed
    assert "fine-tuned (finetune: failed)" in failed
    assert "evaluation (Evaluator: not run)" in failed
    assert "  span 2 (version 1)" in failed


def test_a_run_is_found_by_a_unique_prefix_and_an_unknown_one_lists_the_newest_ids(runs):
    path = str(runs.builder.metadata_path)
    assert history.run_lineage(path, PIPELINE, "2026-01-06").summary.run_id == runs.run_ids[1]

    with pytest.raises(history.RunNotFound, match="matches 3 runs"):
        history.run_lineage(path, PIPELINE, "2026-01")
    with pytest.raises(history.RunNotFound) as unknown:
        history.run_lineage(path, PIPELINE, "2025-12-31")
    assert "no run '2025-12-31'" in str(unknown.value)
    assert ", ".join(runs.run_ids[::-1]) in str(unknown.value)


def test_another_pipeline_in_the_same_store_is_not_listed(runs):
    assert history.list_runs(str(runs.builder.metadata_path), "another-pipeline") == []


def test_a_missing_store_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "metadata.sqlite"
    with pytest.raises(FileNotFoundError, match="no ML Metadata store"):
        history.list_runs(str(missing), PIPELINE)
    assert not missing.exists()


def test_runs_and_show_commands_read_the_store_of_the_output_dir(runs, capsys):
    output_dir = str(runs.builder.root)
    assert main(["runs", "--output-dir", output_dir]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["RUN", "STARTED", "STATE"]
    assert [line.split()[0] for line in table[1:]] == runs.run_ids[::-1]

    assert main(["show", "--output-dir", output_dir, "2026-01-05"]) == 0
    assert capsys.readouterr().out.startswith(f"run {runs.run_ids[0]}: complete")

    with pytest.raises(SystemExit, match="error: pipeline 'clinical-albert' has no run 'nope'"):
        main(["show", "--output-dir", output_dir, "nope"])


def test_an_empty_pipeline_has_no_runs(tmp_path):
    builder = StoreBuilder(tmp_path)
    assert history.format_runs(history.list_runs(str(builder.metadata_path), PIPELINE)) == "no runs recorded"
