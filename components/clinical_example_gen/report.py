"""The ingest report: what every input record became, and the check that nothing went missing.

The executor's Beam pipeline emits (counter, amount) pairs under the keys below; `build_summary` turns
the summed counters into `summary.json` (and `files.jsonl`: what each input file held), and
`check_accounting` enforces the invariant
input_records == kept_examples + duplicates_collapsed + rejected + skipped_not_notes (and that every
kept example landed in exactly one split). `skipped_not_notes` counts the records that a format holds
beside its notes (FHIR Patients, Observations...); where a format names its kinds of record,
`records_by_type` says what each kind became at reading. Counts only: no note text reaches the report.

Under predefined (official) splits, duplicates are collapsed within a split only, so a text found in
two splits is kept (and counted in `kept_examples`) once per split; the invariant holds unchanged.
The summary then also says how many texts (`texts_in_several_splits`) and groups
(`groups_in_several_splits`, with the first group ids by sort order as examples) the official
splits share: leakage that the corpus itself carries, reported rather than repaired.

A corpus read by spans (see spans.py) is accounted for per span as well: `spans` lists the spans
ingested (span, version, path), `spans_requested` how many the run asked for (more than exist is not
an error), and `per_span` what each span's records became, under the same invariant; a kept example
belongs to the span of the record it was kept from, a collapsed duplicate to its own. `files.jsonl`
then names each file's span. A corpus path without `{SPAN}` gets none of these keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"
FILES_FILE = "files.jsonl"

INPUT_RECORDS = "input_records"
KEPT_EXAMPLES = "kept_examples"
DUPLICATES_COLLAPSED = "duplicates_collapsed"
REJECTED = "rejected"
SKIPPED = "skipped_not_notes"
SKIPPED_PREFIX = "skipped/"
#: `type/<record type>/<note|rejected|skipped>`: what each kind of record became at reading.
TYPE_PREFIX = "type/"
#: `file/<note|rejected|skipped>/<file name>`: the same per input file.
FILE_PREFIX = "file/"
FILE_OUTCOMES = ("notes", "rejected", "skipped")
#: `span_file/<outcome>/<span>/<file name>`: the same per input file of a span (names repeat across spans).
SPAN_FILE_PREFIX = "span_file/"
#: `span/<span>/<measure>`: the accounting of one span, for each of `SPAN_MEASURES`.
SPAN_PREFIX = "span/"
REJECTED_PREFIX = "rejected/"
SPLIT_PREFIX = "split/"
PHI_PREFIX = "phi/"
TEXTS_IN_SEVERAL_SPLITS = "texts_in_several_splits"
GROUPS_IN_SEVERAL_SPLITS = "groups_in_several_splits"
GROUPS_IN_SEVERAL_SPLITS_EXAMPLES = "groups_in_several_splits_examples"
#: `several_splits_group/<group id>`: one of the first groups (by id) found in more than one split.
SEVERAL_SPLITS_GROUP_PREFIX = "several_splits_group/"
#: Most group ids listed in `groups_in_several_splits_examples`.
MAX_GROUP_EXAMPLES = 20
SPAN_MEASURES = (INPUT_RECORDS, KEPT_EXAMPLES, DUPLICATES_COLLAPSED, REJECTED, SKIPPED)


def span_counter(span: int, measure: str) -> str:
    """The counter key of one of `SPAN_MEASURES` for one span."""
    return f"{SPAN_PREFIX}{span}/{measure}"


def file_counter(outcome: str, name: str, span: int | None) -> str:
    """The counter key of a file's records with one of `FILE_OUTCOMES`; None: the corpus has no spans."""
    if span is None:
        return f"{FILE_PREFIX}{outcome}/{name}"
    return f"{SPAN_FILE_PREFIX}{outcome}/{span}/{name}"


class AccountingError(RuntimeError):
    """Input records were lost or double-counted between reading and writing."""


def _prefixed(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {key[len(prefix) :]: value for key, value in sorted(counts.items()) if key.startswith(prefix)}


def build_summary(
    counts: Mapping[str, int],
    split_names: Sequence[str],
    predefined_splits: bool = False,
    spans: Sequence[Mapping[str, Any]] | None = None,
    spans_requested: int | None = None,
) -> dict[str, Any]:
    """summary.json's content from the summed counters; splits that got no example show 0.

    `phi_replacements` counts the replacements in the kept examples, per typed token, so a collapsed
    duplicate is not counted twice. With `predefined_splits`, the texts and groups that several splits
    share are reported too (hash splitting cannot share either, and its summary stays as it was).
    With `spans` (each a `{"span", "version", "path"}` mapping), the per-span accounting is added;
    a span that held no record shows 0s.
    """
    rejected_by_reason = _prefixed(counts, REJECTED_PREFIX)
    skipped_by_type = _prefixed(counts, SKIPPED_PREFIX)
    per_split = _prefixed(counts, SPLIT_PREFIX)
    by_type: dict[str, dict[str, int]] = {}
    for key, value in _prefixed(counts, TYPE_PREFIX).items():
        kind, _, outcome = key.rpartition("/")
        by_type.setdefault(kind, dict.fromkeys(FILE_OUTCOMES, 0))[outcome] = value
    summary = {
        INPUT_RECORDS: counts.get(INPUT_RECORDS, 0),
        KEPT_EXAMPLES: counts.get(KEPT_EXAMPLES, 0),
        DUPLICATES_COLLAPSED: counts.get(DUPLICATES_COLLAPSED, 0),
        REJECTED: sum(rejected_by_reason.values()),
        SKIPPED: sum(skipped_by_type.values()),
        "rejected_by_reason": rejected_by_reason,
        "examples_per_split": {name: per_split.get(name, 0) for name in split_names},
        "phi_replacements": _prefixed(counts, PHI_PREFIX),
    }
    if predefined_splits:
        summary[TEXTS_IN_SEVERAL_SPLITS] = counts.get(TEXTS_IN_SEVERAL_SPLITS, 0)
        summary[GROUPS_IN_SEVERAL_SPLITS] = counts.get(GROUPS_IN_SEVERAL_SPLITS, 0)
        examples = sorted(_prefixed(counts, SEVERAL_SPLITS_GROUP_PREFIX))
        summary[GROUPS_IN_SEVERAL_SPLITS_EXAMPLES] = examples[:MAX_GROUP_EXAMPLES]
    if spans is not None:
        summary["spans"] = [dict(span) for span in spans]
        summary["spans_requested"] = spans_requested
        summary["per_span"] = [
            {"span": span["span"], **{m: counts.get(span_counter(span["span"], m), 0) for m in SPAN_MEASURES}}
            for span in spans
        ]
    if skipped_by_type:
        summary["skipped_by_type"] = skipped_by_type
    if by_type:
        summary["records_by_type"] = dict(sorted(by_type.items()))
    return summary


def file_lines(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """One `files.jsonl` line per input file: its records, and how many became notes, rejects or
    skipped records (notes before deduplication); `records` is always their sum. A span's file also
    names its `span`; lines are sorted by span, then name."""
    per_file: dict[tuple[int, str], dict[str, int]] = {}
    for key, value in _prefixed(counts, FILE_PREFIX).items():
        outcome, _, name = key.partition("/")
        per_file.setdefault((-1, name), dict.fromkeys(FILE_OUTCOMES, 0))[outcome] = value
    for key, value in _prefixed(counts, SPAN_FILE_PREFIX).items():
        outcome, span, name = key.split("/", 2)
        per_file.setdefault((int(span), name), dict.fromkeys(FILE_OUTCOMES, 0))[outcome] = value
    return [
        {"file": name, **({"span": span} if span >= 0 else {}), "records": sum(outcomes.values()), **outcomes}
        for (span, name), outcomes in sorted(per_file.items())
    ]


def _check_records(counts: Mapping[str, Any], where: str) -> None:
    skipped = counts.get(SKIPPED, 0)
    accounted = counts[KEPT_EXAMPLES] + counts[DUPLICATES_COLLAPSED] + counts[REJECTED] + skipped
    if counts[INPUT_RECORDS] != accounted:
        raise AccountingError(
            f"{where}{counts[INPUT_RECORDS]} input records but {counts[KEPT_EXAMPLES]} kept + "
            f"{counts[DUPLICATES_COLLAPSED]} duplicates collapsed + {counts[REJECTED]} rejected + "
            f"{skipped} skipped as not notes"
        )


def check_accounting(summary: Mapping[str, Any], files: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Raises AccountingError unless every input record is kept, collapsed, rejected or skipped, exactly
    once, and (given `file_lines`) the files' records add up to the input. With `per_span`, the same
    holds within each span, and the spans' figures add up to the totals."""
    if files is not None and sum(line["records"] for line in files) != summary[INPUT_RECORDS]:
        total = sum(line["records"] for line in files)
        raise AccountingError(f"{summary[INPUT_RECORDS]} input records but {total} read from the files")
    _check_records(summary, "")
    per_span = summary.get("per_span")
    if per_span is not None:
        for span in per_span:
            _check_records(span, f"span {span['span']}: ")
        for measure in SPAN_MEASURES:
            if (total := sum(span[measure] for span in per_span)) != summary.get(measure, 0):
                raise AccountingError(f"{summary.get(measure, 0)} {measure} but the spans add up to {total}")
    in_splits = sum(summary["examples_per_split"].values())
    if in_splits != summary[KEPT_EXAMPLES]:
        raise AccountingError(f"{summary[KEPT_EXAMPLES]} kept examples but {in_splits} written to splits")
