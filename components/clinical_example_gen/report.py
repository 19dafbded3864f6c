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


class AccountingError(RuntimeError):
    """Input records were lost or double-counted between reading and writing."""


def _prefixed(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {key[len(prefix) :]: value for key, value in sorted(counts.items()) if key.startswith(prefix)}


def build_summary(
    counts: Mapping[str, int], split_names: Sequence[str], predefined_splits: bool = False
) -> dict[str, Any]:
    """summary.json's content from the summed counters; splits that got no example show 0.

    `phi_replacements` counts the replacements in the kept examples, per typed token, so a collapsed
    duplicate is not counted twice. With `predefined_splits`, the texts and groups that several splits
    share are reported too (hash splitting cannot share either, and its summary stays as it was).
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
    if skipped_by_type:
        summary["skipped_by_type"] = skipped_by_type
    if by_type:
        summary["records_by_type"] = dict(sorted(by_type.items()))
    return summary


def file_lines(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """One `files.jsonl` line per input file: its records, and how many became notes, rejects or
    skipped records (notes before deduplication); `records` is always their sum."""
    per_file: dict[str, dict[str, int]] = {}
    for key, value in _prefixed(counts, FILE_PREFIX).items():
        outcome, _, name = key.partition("/")
        per_file.setdefault(name, dict.fromkeys(FILE_OUTCOMES, 0))[outcome] = value
    return [
        {"file": name, "records": sum(outcomes.values()), **outcomes}
        for name, outcomes in sorted(per_file.items())
    ]


def check_accounting(summary: Mapping[str, Any], files: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Raises AccountingError unless every input record is kept, collapsed, rejected or skipped, exactly
    once, and (given `file_lines`) the files' records add up to the input."""
    if files is not None and sum(line["records"] for line in files) != summary[INPUT_RECORDS]:
        total = sum(line["records"] for line in files)
        raise AccountingError(f"{summary[INPUT_RECORDS]} input records but {total} read from the files")
    skipped = summary.get(SKIPPED, 0)
    accounted = summary[KEPT_EXAMPLES] + summary[DUPLICATES_COLLAPSED] + summary[REJECTED] + skipped
    if summary[INPUT_RECORDS] != accounted:
        raise AccountingError(
            f"{summary[INPUT_RECORDS]} input records but {summary[KEPT_EXAMPLES]} kept + "
            f"{summary[DUPLICATES_COLLAPSED]} duplicates collapsed + {summary[REJECTED]} rejected + "
            f"{skipped} skipped as not notes"
        )
    in_splits = sum(summary["examples_per_split"].values())
    if in_splits != summary[KEPT_EXAMPLES]:
        raise AccountingError(f"{summary[KEPT_EXAMPLES]} kept examples but {in_splits} written to splits")
