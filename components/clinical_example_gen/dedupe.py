"""Collapsing notes whose processed text is identical into one example.

Duplicates are common (MTSamples lists a note once per specialty it belongs to; exports repeat notes),
and a note in both train and test would inflate evaluation. Deduplication runs before splitting, so a
collapsed note has one group and therefore one split. The kept note is the one with the smallest
(note_id, group_id), whatever order the duplicates arrive in; its labels become the union of all.

Under predefined (official) splits the executor collapses only duplicates within one split (its key is
split and text), so that no document moves across an official split; each split keeps its own copy,
and the kept note keeps its split.

A text pair (question and passage) is a duplicate only of a pair whose two texts are both equal to its
own: the same question over another passage is another example.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from components.clinical_example_gen.records import ProcessedNote


def merge_duplicates(notes: Iterable[ProcessedNote]) -> tuple[ProcessedNote, int]:
    """One note standing for `notes` (all with the same text, and the same `text_b`), and how many were
    collapsed into it."""
    ordered = sorted(notes, key=lambda note: (note.note_id, note.group_id))
    if not ordered:
        raise ValueError("merge_duplicates needs at least one note")
    labels = sorted({label for note in ordered for label in note.labels})
    return dataclasses.replace(ordered[0], labels=tuple(labels)), len(ordered) - 1
