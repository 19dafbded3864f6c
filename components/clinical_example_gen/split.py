"""Assigning notes to splits: by a stable hash of their group, or by the corpus's own (official) splits.

The bucket of a group is sha256(group_id) modulo the sum of the split ratios: the same on every
machine, run and Python process (Python's `hash` is salted per process), and independent of input
order. Splits take consecutive bucket ranges in the order of their names, so the assignment depends
only on the split mapping, not on how its JSON happened to be ordered.

Corpora that ship official splits (NCBI-disease's train/devel/test files, a CSV with a split column)
keep them through a `SplitSource`: the split of a note is then its file's (matched by name) or a value
its reader read, and the hash is not used.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_SPLITS: dict[str, int] = {"train": 8, "eval": 1, "test": 1}

_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")

Splits = tuple[tuple[str, int], ...]


def parse_splits(splits: Mapping[str, int]) -> Splits:
    """Validates split name -> ratio (a positive integer, like TFX's hash_buckets); sorted by name."""
    if not splits:
        raise ValueError("splits: at least one split is needed")
    for name, ratio in splits.items():
        if not isinstance(name, str) or not _SPLIT_NAME.fullmatch(name):
            raise ValueError(f"splits: name {name!r} must be letters, digits, '_' or '-'")
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio <= 0:
            raise ValueError(f"splits: ratio of {name!r} must be a positive integer, got {ratio!r}")
    return tuple(sorted(splits.items()))


def bucket(group_id: str, num_buckets: int) -> int:
    """The group's bucket in [0, num_buckets)."""
    digest = hashlib.sha256(group_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_buckets


def split_index(group_id: str, splits: Sequence[tuple[str, int]]) -> int:
    """The index in `splits` of the split this group belongs to."""
    position = bucket(group_id, sum(ratio for _, ratio in splits))
    for index, (_, ratio) in enumerate(splits):
        if position < ratio:
            return index
        position -= ratio
    raise AssertionError("bucket beyond the sum of ratios")


#: `SplitSource.mode` values: the split of a note comes from its file's name, or from a field of its
#: record (`CsvConfig.split_column`, `JsonlConfig.split_key`).
FILES = "files"
FIELD = "field"
#: Split names that the rest of the pipeline reads (Trainer and Evaluator), so every source must have.
REQUIRED_SPLITS = ("train", "eval")
#: Most file names one configuration error lists.
_MAX_NAMED_FILES = 10


@dataclasses.dataclass(frozen=True)
class SplitSource:
    """Where each note's split comes from: empty `mode` for the group hash, else `FILES` or `FIELD`."""

    mode: str = ""
    #: Split name -> fnmatch patterns for file names (FILES) or the record values it takes (FIELD);
    #: sorted by split name.
    patterns: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def predefined(self) -> bool:
        return bool(self.mode)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.patterns)

    def split_of_value(self, value: str) -> str | None:
        """The split whose values list `value` exactly (FIELD), or None."""
        return next((name for name, values in self.patterns if value in values), None)


def parse_split_source(source: Mapping[str, Any]) -> SplitSource:
    """Validates the `split_source` JSON: `{}`, `{"files": {split: [pattern, ...]}}` or
    `{"field": {split: [value, ...]}}`; split names as in `parse_splits`, train and eval required."""
    if not isinstance(source, Mapping):
        raise ValueError(f"split_source must be a JSON object, got {type(source).__name__}")
    if not source:
        return SplitSource()
    if len(source) != 1 or next(iter(source)) not in (FILES, FIELD):
        raise ValueError(f"split_source must have one key, {FILES!r} or {FIELD!r}; got {sorted(source)}")
    mode, splits = next(iter(source.items()))
    if not isinstance(splits, Mapping) or not splits:
        raise ValueError(f"split_source {mode}: expected an object of split name -> list of strings")
    patterns = []
    for name, listed in sorted(splits.items()):
        if not isinstance(name, str) or not _SPLIT_NAME.fullmatch(name):
            raise ValueError(f"split_source {mode}: name {name!r} must be letters, digits, '_' or '-'")
        if not isinstance(listed, list) or not listed:
            raise ValueError(f"split_source {mode}: {name!r} needs a non-empty list of strings")
        if not all(isinstance(item, str) and item.strip() for item in listed):
            raise ValueError(f"split_source {mode}: {name!r} lists something other than non-empty strings")
        patterns.append((name, tuple(item.strip() for item in listed)))
    missing = [name for name in REQUIRED_SPLITS if name not in splits]
    if missing:
        raise ValueError(f"split_source {mode}: splits {missing} are required, got {sorted(splits)}")
    if mode == FIELD:
        seen: dict[str, str] = {}
        for name, values in patterns:
            for value in values:
                if seen.setdefault(value, name) != name:
                    raise ValueError(
                        f"split_source field: value {value!r} is listed for {seen[value]!r} and {name!r}"
                    )
    return SplitSource(mode, tuple(patterns))


def split_files(names: Sequence[str], source: SplitSource) -> dict[str, str]:
    """Input file name (relative to input_base) -> split, by the FILES patterns (`fnmatch.fnmatchcase`,
    whose `*` also matches `/`). Raises ValueError naming the files that match no split, or several."""
    assigned, unmatched, ambiguous = {}, [], []
    for file_name in names:
        matched = [
            split for split, globs in source.patterns if any(fnmatch.fnmatchcase(file_name, g) for g in globs)
        ]
        if len(matched) == 1:
            assigned[file_name] = matched[0]
        elif matched:
            ambiguous.append(f"{file_name} ({', '.join(matched)})")
        else:
            unmatched.append(file_name)
    problems = []
    for what, files in (("match no split", unmatched), ("match several splits", ambiguous)):
        if files:
            shown = ", ".join(files[:_MAX_NAMED_FILES]) + (", ..." if len(files) > _MAX_NAMED_FILES else "")
            problems.append(f"{len(files)} input files {what}: {shown}")
    if problems:
        patterns = {split: list(globs) for split, globs in source.patterns}
        raise ValueError(f"split_source files: {'; '.join(problems)}. Patterns: {patterns}")
    return assigned
