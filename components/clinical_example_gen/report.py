"""The ingest report: what every input record became, and the check that nothing went missing.

The executor's Beam pipeline emits (counter, amount) pairs under the keys below; `build_summary` turns
the summed counters into `summary.json`, and `check_accounting` enforces the invariant
input_records == kept_examples + duplicates_collapsed + rejected (and that every kept example landed
in exactly one split). Counts only: no note text reaches the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"

INPUT_RECORDS = "input_records"
KEPT_EXAMPLES = "kept_examples"
DUPLICATES_COLLAPSED = "duplicates_collapsed"
REJECTED = "rejected"
REJECTED_PREFIX = "rejected/"
SPLIT_PREFIX = "split/"
PHI_PREFIX = "phi/"


class AccountingError(RuntimeError):
    """Input records were lost or double-counted between reading and writing."""


def _prefixed(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {key[len(prefix) :]: value for key, value in sorted(counts.items()) if key.startswith(prefix)}


def build_summary(counts: Mapping[str, int], split_names: Sequence[str]) -> dict[str, Any]:
    """summary.json's content from the summed counters; splits that got no example show 0.

    `phi_replacements` counts the replacements in the kept examples, per typed token, so a collapsed
    duplicate is not counted twice.
    """
    rejected_by_reason = _prefixed(counts, REJECTED_PREFIX)
    per_split = _prefixed(counts, SPLIT_PREFIX)
    return {
        INPUT_RECORDS: counts.get(INPUT_RECORDS, 0),
        KEPT_EXAMPLES: counts.get(KEPT_EXAMPLES, 0),
        DUPLICATES_COLLAPSED: counts.get(DUPLICATES_COLLAPSED, 0),
        REJECTED: sum(rejected_by_reason.values()),
        "rejected_by_reason": rejected_by_reason,
        "examples_per_split": {name: per_split.get(name, 0) for name in split_names},
        "phi_replacements": _prefixed(counts, PHI_PREFIX),
    }


def check_accounting(summary: Mapping[str, Any]) -> None:
    """Raises AccountingError unless every input record is kept, collapsed or rejected, exactly once."""
    accounted = summary[KEPT_EXAMPLES] + summary[DUPLICATES_COLLAPSED] + summary[REJECTED]
    if summary[INPUT_RECORDS] != accounted:
        raise AccountingError(
            f"{summary[INPUT_RECORDS]} input records but {summary[KEPT_EXAMPLES]} kept + "
            f"{summary[DUPLICATES_COLLAPSED]} duplicates collapsed + {summary[REJECTED]} rejected"
        )
    in_splits = sum(summary["examples_per_split"].values())
    if in_splits != summary[KEPT_EXAMPLES]:
        raise AccountingError(f"{summary[KEPT_EXAMPLES]} kept examples but {in_splits} written to splits")
