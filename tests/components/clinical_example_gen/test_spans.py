"""Corpus spans: `{SPAN}`/`{VERSION}` patterns resolved to the newest spans (folders, file names,
versions, leading zeros, a rolling window, the errors), the driver fingerprinting only those spans, and
the executor reading them with per-span accounting, while a plain path reads as it always did."""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

import pytest
from tfx.orchestration.portable import data_types

from components.clinical_example_gen import report, spans
from components.clinical_example_gen.component import ClinicalExampleGen
from components.clinical_example_gen.driver import (
    INPUT_FINGERPRINT,
    InputFingerprintDriver,
    input_fingerprint,
)
from components.clinical_example_gen.spans import RESOLVED_SPANS, ResolvedSpan
from tests.components.clinical_example_gen.test_executor import checked_summary, run_executor, write_jsonl


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"id": "x", "text": "Synthetic note."}\n')


def _numbers(resolved: tuple[ResolvedSpan, ...]) -> list[tuple[int | None, int | None]]:
    return [(span.span, span.version) for span in resolved]


# -- patterns and resolution ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("notes/v{VERSION}/", "needs {SPAN}"),
        ("notes/{SPAN}/notes-{SPAN}.csv", "may appear once"),
        ("notes/{SPAN}/v{VERSION}/{VERSION}.csv", "may appear once"),
        ("notes/{SPAN:3}/", "not supported"),
        ("notes/{YYYY}-{MM}-{DD}/", "not supported"),
    ],
)
def test_malformed_patterns_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spans.has_span(pattern)
    with pytest.raises(ValueError, match=message):
        spans.resolve(pattern)


def test_spans_must_be_positive_and_need_a_span_placeholder() -> None:
    assert spans.has_span("notes/span-{SPAN}/") and not spans.has_span("notes/")
    for bad in (0, -1, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            spans.check_spans("notes/{SPAN}/", bad)
    with pytest.raises(ValueError, match=r"spans=2 needs \{SPAN\}"):
        spans.check_spans("notes/", 2)
    spans.check_spans("notes/", 1)


def test_a_plain_path_is_its_own_span(tmp_path: Path) -> None:
    assert spans.resolve(str(tmp_path / "missing.csv")) == (
        ResolvedSpan(None, None, str(tmp_path / "missing.csv")),
    )


def test_span_folders_newest_first_with_leading_zeros_and_a_rolling_window(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    _touch(notes / "span-1" / "a.jsonl", notes / "span-02" / "a.jsonl", notes / "span-10" / "a.jsonl")
    # Not digits where {SPAN} stands, or not a span folder: never a span.
    _touch(notes / "span-x" / "a.jsonl", notes / "span-3a" / "a.jsonl", notes / "other-4" / "a.jsonl")
    pattern = f"{notes}/span-{{SPAN}}/"

    assert spans.resolve(pattern) == (ResolvedSpan(10, None, f"{notes}/span-10/"),)
    window = spans.resolve(pattern, 2)
    # Numerically newest (10 after 02), oldest first, each path spelled as on disk.
    assert window == (ResolvedSpan(2, None, f"{notes}/span-02/"), ResolvedSpan(10, None, f"{notes}/span-10/"))
    # More spans than exist: all of them, no error.
    assert [span.span for span in spans.resolve(pattern, 7)] == [1, 2, 10]
    files = spans.list_files(window, "jsonl")
    assert [(file.span, file.name) for file in files] == [(2, "a.jsonl"), (10, "a.jsonl")]


def test_span_in_a_file_name(tmp_path: Path) -> None:
    _touch(tmp_path / "notes-1.jsonl", tmp_path / "notes-3.jsonl", tmp_path / "notes-old.jsonl")
    _touch(tmp_path / "notes-3.jsonl.tmp", tmp_path / "sub" / "notes-9.jsonl")
    resolved = spans.resolve(f"{tmp_path}/notes-{{SPAN}}.jsonl", 5)
    assert _numbers(resolved) == [(1, None), (3, None)]
    assert resolved[-1].path == f"{tmp_path}/notes-3.jsonl"
    assert [(f.span, f.name) for f in spans.list_files(resolved, "jsonl")] == [
        (1, "notes-1.jsonl"),
        (3, "notes-3.jsonl"),
    ]


def test_each_span_at_its_newest_version(tmp_path: Path) -> None:
    for span, version in [("1", "1"), ("1", "3"), ("2", "1"), ("2", "02")]:
        _touch(tmp_path / span / f"v{version}" / "notes.jsonl")
    _touch(tmp_path / "3" / "latest" / "notes.jsonl")  # no version: not a match
    resolved = spans.resolve(f"{tmp_path}/{{SPAN}}/v{{VERSION}}", 2)
    assert _numbers(resolved) == [(1, 3), (2, 2)]
    assert [span.path for span in resolved] == [f"{tmp_path}/1/v3", f"{tmp_path}/2/v02"]
    assert [f.path for f in spans.list_files(resolved, "jsonl")] == [
        str(tmp_path / "1" / "v3" / "notes.jsonl"),
        str(tmp_path / "2" / "v02" / "notes.jsonl"),
    ]


def test_wildcards_after_the_span_search_as_the_format_does(tmp_path: Path) -> None:
    _touch(tmp_path / "4" / "a.jsonl", tmp_path / "4" / "b.jsonl", tmp_path / "4" / ".partial.jsonl")
    _touch(tmp_path / "4" / "notes.csv", tmp_path / "5" / "readme.md")
    _touch(tmp_path / "6" / "batch-1" / "x.jsonl", tmp_path / "6" / "batch-1" / "x.csv")
    # Span 5 has no *.jsonl: the pattern does not match it.
    files_pattern = f"{tmp_path}/{{SPAN}}/*.jsonl"
    assert _numbers(spans.resolve(files_pattern, 3)) == [(4, None)]
    resolved = spans.resolve(files_pattern)
    assert [f.name for f in spans.list_files(resolved, "jsonl")] == ["a.jsonl", "b.jsonl"]
    # A folder match is searched for the format's files, names relative to the folder before the wildcard.
    folders = spans.resolve(f"{tmp_path}/{{SPAN}}/batch-*/")
    assert _numbers(folders) == [(6, None)]
    assert [f.name for f in spans.list_files(folders, "jsonl")] == ["batch-1/x.jsonl"]


def test_no_match_and_ambiguous_spellings_are_errors(tmp_path: Path) -> None:
    pattern = f"{tmp_path}/span-{{SPAN}}/"
    with pytest.raises(FileNotFoundError, match=r"span-\{SPAN\}/: nothing matches"):
        spans.resolve(pattern)
    _touch(tmp_path / "span-x" / "a.jsonl")
    with pytest.raises(FileNotFoundError, match="nothing matches"):
        spans.resolve(pattern)
    _touch(tmp_path / "span-3" / "a.jsonl", tmp_path / "span-03" / "a.jsonl")
    with pytest.raises(ValueError, match="span 3 is written several ways"):
        spans.resolve(pattern)


def test_cloud_paths_keep_their_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    """fileio's glob stands in for cloud storage: the paths it returns are matched with their scheme."""
    stored = [
        "gs://bucket/notes/day-01/v1/part-1.csv",
        "gs://bucket/notes/day-01/v2/part-1.csv",
        "gs://bucket/notes/day-01/v2/part-2.csv",
        "gs://bucket/notes/day-02/v1/part-1.csv",
        "gs://bucket/notes/day-02/v1/part-x.csv",
    ]
    monkeypatch.setattr(
        spans.fileio, "glob", lambda pattern: [p for p in stored if fnmatch.fnmatch(p, pattern)]
    )
    monkeypatch.setattr(spans.fileio, "isdir", lambda path: False)
    resolved = spans.resolve("gs://bucket/notes/day-{SPAN}/v{VERSION}/part-[0-9].csv", 2)
    assert resolved == (
        ResolvedSpan(1, 2, "gs://bucket/notes/day-01/v2/part-[0-9].csv"),
        ResolvedSpan(2, 1, "gs://bucket/notes/day-02/v1/part-[0-9].csv"),
    )
    assert [(f.span, f.name, f.path) for f in spans.list_files(resolved, "csv")] == [
        (1, "part-1.csv", stored[1]),
        (1, "part-2.csv", stored[2]),
        (2, "part-1.csv", stored[3]),
    ]


def test_the_resolution_round_trips_through_its_exec_property(tmp_path: Path) -> None:
    resolved = (ResolvedSpan(2, 1, "notes/2/v1"), ResolvedSpan(3, None, "notes/3"))
    assert spans.from_json(spans.to_json(resolved)) == resolved
    for bad in ("not json", "[]", '[{"span": 1}]', '[{"span": -1, "version": null, "path": "x"}]'):
        with pytest.raises(ValueError, match=RESOLVED_SPANS):
            spans.from_json(bad)


# -- the driver ----------------------------------------------------------------------------------


def test_the_fingerprint_covers_only_the_ingested_spans(tmp_path: Path) -> None:
    pattern = f"{tmp_path}/span-{{SPAN}}"
    _touch(tmp_path / "span-1" / "a.jsonl", tmp_path / "span-2" / "a.jsonl")
    newest, window = input_fingerprint(pattern, "jsonl"), input_fingerprint(pattern, "jsonl", 2)
    assert newest.startswith("1 files in spans [2]") and window.startswith("2 files in spans [1, 2]")
    # A changed file in a span outside the window is no new input; inside it, it is.
    stat = os.stat(tmp_path / "span-1" / "a.jsonl")
    os.utime(tmp_path / "span-1" / "a.jsonl", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert input_fingerprint(pattern, "jsonl") == newest
    assert input_fingerprint(pattern, "jsonl", 2) != window
    # A new span is a new input for both.
    _touch(tmp_path / "span-3" / "a.jsonl")
    assert input_fingerprint(pattern, "jsonl") != newest
    assert input_fingerprint(pattern, "jsonl", 2).startswith("2 files in spans [2, 3]")


def test_both_driver_entry_points_record_the_resolution(tmp_path: Path) -> None:
    _touch(tmp_path / "span-1" / "a.jsonl", tmp_path / "span-2" / "a.jsonl")
    properties = {"input_base": f"{tmp_path}/span-{{SPAN}}/", "input_format": "jsonl", "spans": 2}
    output = InputFingerprintDriver(None).run(data_types.ExecutionInfo(exec_properties=dict(properties)))
    resolved = spans.from_json(output.exec_properties[RESOLVED_SPANS].string_value)
    assert _numbers(resolved) == [(1, None), (2, None)]
    fingerprint = output.exec_properties[INPUT_FINGERPRINT].string_value
    assert fingerprint == input_fingerprint(properties["input_base"], "jsonl", 2)
    legacy = InputFingerprintDriver(None).resolve_exec_properties(dict(properties), None, None)
    assert legacy[RESOLVED_SPANS] == output.exec_properties[RESOLVED_SPANS].string_value
    assert legacy[INPUT_FINGERPRINT] == fingerprint


# -- the executor --------------------------------------------------------------------------------


def _two_spans(root: Path) -> str:
    """Span 1: two notes, a duplicate within the span, an empty text. Span 2: a duplicate of a span-1
    note under another id, a malformed line, a new note of a patient already seen in span 1."""
    write_jsonl(
        root / "span-1" / "notes.jsonl",
        [
            {"id": "a1", "text": "Fever resolved overnight.", "patient": "p1"},
            {"id": "a2", "text": "Cough improving slowly.", "patient": "p2"},
            {"id": "a3", "text": "Cough improving slowly.", "patient": "p3"},
            {"id": "a4", "text": "  ", "patient": "p4"},
        ],
    )
    (root / "span-2").mkdir()
    (root / "span-2" / "notes.jsonl").write_text(
        '{"id": "b1", "text": "Fever resolved overnight.", "patient": "p5"}\n'
        '{"id": "b2", "text": \n'
        '{"id": "b3", "text": "Wound healing well.", "patient": "p1"}\n'
    )
    return f"{root}/span-{{SPAN}}/"


def _note_ids(run) -> dict[str, set[str]]:
    return {name: {note["note_id"][0] for note in notes} for name, notes in run.all_notes().items()}


def test_the_newest_span_alone(tmp_path: Path) -> None:
    pattern = _two_spans(tmp_path / "corpus")
    run = run_executor(tmp_path / "out", pattern, "jsonl", {"group_key": "patient"}, spans=1)

    summary = checked_summary(run)
    assert set().union(*_note_ids(run).values()) == {"b1", "b3"}
    assert summary["input_records"] == 3 and summary["rejected"] == 1 and summary["kept_examples"] == 2
    path = str(tmp_path / "corpus" / "span-2") + "/"
    assert summary["spans"] == [{"span": 2, "version": None, "path": path}]
    assert summary["spans_requested"] == 1 and summary["input_files"] == 1
    assert summary["per_span"] == [
        {
            "span": 2,
            "input_records": 3,
            "kept_examples": 2,
            "duplicates_collapsed": 0,
            "rejected": 1,
            "skipped_not_notes": 0,
        }
    ]
    assert run.rejects() == [{"locator": "notes.jsonl:line 2", "reason": "malformed JSON", "span": 2}]
    assert run.examples.span == 2 and run.report.get_int_custom_property("span") == 2
    assert json.loads(run.examples.get_string_custom_property("spans")) == summary["spans"]


def test_a_rolling_window_accounts_for_every_span(tmp_path: Path) -> None:
    pattern = _two_spans(tmp_path / "corpus")
    run = run_executor(tmp_path / "out", pattern, "jsonl", {"group_key": "patient"}, spans=3)

    summary = checked_summary(run)
    assert [span["span"] for span in summary["spans"]] == [1, 2] and summary["spans_requested"] == 3
    per_span = {span.pop("span"): span for span in summary["per_span"]}
    for measure in report.SPAN_MEASURES:
        assert sum(span[measure] for span in per_span.values()) == summary[measure]
    # b1 repeats a1's text across spans: a1 is kept (span 1), b1 collapsed (span 2).
    assert per_span[1] == {
        "input_records": 4,
        "kept_examples": 2,
        "duplicates_collapsed": 1,
        "rejected": 1,
        "skipped_not_notes": 0,
    }
    assert per_span[2] == {
        "input_records": 3,
        "kept_examples": 1,
        "duplicates_collapsed": 1,
        "rejected": 1,
        "skipped_not_notes": 0,
    }
    ids = _note_ids(run)
    assert set().union(*ids.values()) == {"a1", "a2", "b3"}
    # Patient p1's notes, from two spans, share a split.
    assert [name for name, split_ids in ids.items() if {"a1", "b3"} <= split_ids]
    assert sorted((r["span"], r["locator"]) for r in run.rejects()) == [
        (1, "notes.jsonl:line 4"),
        (2, "notes.jsonl:line 2"),
    ]
    files = [json.loads(line) for line in (Path(run.report.uri) / "files.jsonl").read_text().splitlines()]
    assert [(line["span"], line["file"], line["records"]) for line in files] == [
        (1, "notes.jsonl", 4),
        (2, "notes.jsonl", 3),
    ]
    assert run.examples.span == 2
    assert [span["span"] for span in json.loads(run.report.get_string_custom_property("spans"))] == [1, 2]


def test_the_executor_reads_what_the_driver_resolved(tmp_path: Path) -> None:
    pattern = _two_spans(tmp_path / "corpus")
    driven = InputFingerprintDriver(None).resolve_exec_properties(
        {"input_base": pattern, "input_format": "jsonl", "spans": 1}, None, None
    )
    # A span delivered after the driver ran waits for the next run.
    write_jsonl(tmp_path / "corpus" / "span-3" / "notes.jsonl", [{"id": "c1", "text": "Late note."}])
    run = run_executor(tmp_path / "out", pattern, "jsonl", spans=1, resolved_spans=driven[RESOLVED_SPANS])
    assert [span["span"] for span in checked_summary(run)["spans"]] == [2]
    assert set().union(*_note_ids(run).values()) == {"b1", "b3"}


def test_a_version_replaces_the_span_it_reissues(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "7" / "v1" / "n.jsonl", [{"id": "old", "text": "First issue."}])
    write_jsonl(tmp_path / "7" / "v2" / "n.jsonl", [{"id": "new", "text": "Second issue."}])
    run = run_executor(tmp_path / "out", f"{tmp_path}/{{SPAN}}/v{{VERSION}}/", "jsonl")
    summary = checked_summary(run)
    assert set().union(*_note_ids(run).values()) == {"new"}
    assert summary["spans"] == [{"span": 7, "version": 2, "path": f"{tmp_path}/7/v2/"}]
    assert (run.examples.span, run.examples.version) == (7, 2)
    assert run.report.get_int_custom_property("version") == 2


def test_official_split_files_are_named_within_their_span(tmp_path: Path) -> None:
    for span in ("1", "2"):
        write_jsonl(tmp_path / span / "train.jsonl", [{"id": f"t{span}", "text": f"Train note {span}."}])
        write_jsonl(tmp_path / span / "dev.jsonl", [{"id": f"d{span}", "text": f"Dev note {span}."}])
    run = run_executor(
        tmp_path / "out",
        f"{tmp_path}/{{SPAN}}",
        "jsonl",
        spans=2,
        split_source={"files": {"train": ["train*"], "eval": ["dev*"]}},
    )
    checked_summary(run)
    assert _note_ids(run) == {"eval": {"d1", "d2"}, "train": {"t1", "t2"}}


def test_a_plain_path_reads_as_before(tmp_path: Path) -> None:
    pattern = _two_spans(tmp_path / "corpus")
    plain = run_executor(
        tmp_path / "plain", tmp_path / "corpus" / "span-2", "jsonl", {"group_key": "patient"}
    )
    spanned = run_executor(tmp_path / "spanned", pattern, "jsonl", {"group_key": "patient"}, spans=1)

    summary = checked_summary(plain)
    assert not {"spans", "spans_requested", "per_span"} & set(summary)
    assert all("span" not in line for line in plain.rejects())
    files = (Path(plain.report.uri) / "files.jsonl").read_text().splitlines()
    assert all("span" not in json.loads(line) for line in files)
    # The same files through a one-span pattern: the same examples and counts, spans aside.
    assert plain.all_notes() == spanned.all_notes()
    spanned_summary = {k: v for k, v in checked_summary(spanned).items() if k not in summary}
    assert {k: v for k, v in checked_summary(spanned).items() if k in summary} == summary
    assert set(spanned_summary) == {"spans", "spans_requested", "per_span"}
    assert plain.rejects() == [{k: v for k, v in r.items() if k != "span"} for r in spanned.rejects()]
    assert plain.examples.span == 0 and not plain.report.has_custom_property("spans")


# -- the component -------------------------------------------------------------------------------


def test_the_component_records_spans_and_refuses_bad_ones() -> None:
    component = ClinicalExampleGen("notes/span-{SPAN}/", "jsonl", spans=3)
    assert component.exec_properties["spans"] == 3
    assert ClinicalExampleGen("notes/", "jsonl").exec_properties["spans"] == 1
    for input_base, count, message in [
        ("notes/", 2, "needs"),
        ("notes/{SPAN}/", 0, "positive"),
        ("notes/v{VERSION}/", 1, "needs"),
    ]:
        with pytest.raises(ValueError, match=message):
            ClinicalExampleGen(input_base, "jsonl", spans=count)
