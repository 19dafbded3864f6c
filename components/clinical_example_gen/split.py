"""Assigning groups to splits by a stable hash, so a patient's notes always land in one split.

The bucket of a group is sha256(group_id) modulo the sum of the split ratios: the same on every
machine, run and Python process (Python's `hash` is salted per process), and independent of input
order. Splits take consecutive bucket ranges in the order of their names, so the assignment depends
only on the split mapping, not on how its JSON happened to be ordered.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

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
