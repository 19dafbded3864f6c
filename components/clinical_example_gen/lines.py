"""Streaming physical lines out of a (possibly gzipped) file, with a cap on what is kept in memory.

The line-based readers (CSV, JSON Lines, FHIR ndjson) go through here so that no file is ever read
whole and no single line can cost more than its cap: a line longer than the cap is still walked to its
end (its length and quote count are known) but its bytes are dropped as they stream past, so a 10 MB
note costs one chunk of memory, not ten megabytes. Lines are bytes: decoding is the reader's business,
per record, so that one bad byte rejects one record and not the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
from collections.abc import Iterator
from typing import BinaryIO

from tfx.dsl.io import fileio

_CHUNK_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Line:
    """One physical line, its newline included."""

    #: 1-based line number in the file.
    number: int
    #: The line's bytes, or None when it was longer than the cap and was not kept.
    data: bytes | None
    #: Length in bytes, counted even when the bytes were dropped.
    length: int
    #: Number of double-quote bytes, counted even when dropped (CSV records end on an even count).
    quotes: int


@contextlib.contextmanager
def open_binary(path: str) -> Iterator[BinaryIO]:
    """Opens `path` for reading bytes through TFX's fileio (local disk or cloud storage); `.gz` inflated."""
    with fileio.open(path, "rb") as raw:
        if path.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as inflated:
                yield inflated
        else:
            yield raw


def physical_lines(stream: BinaryIO, keep: int) -> Iterator[Line]:
    """Yields the lines of `stream`, keeping the bytes of those no longer than `keep` bytes."""
    number = 0
    pending = bytearray()
    length = quotes = 0
    dropped = False
    while chunk := stream.read(_CHUNK_BYTES):
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end + 1
            piece = chunk[start:stop]
            length += len(piece)
            quotes += piece.count(b'"')
            if not dropped and length > keep:
                dropped = True
                pending.clear()
            if not dropped:
                pending += piece
            start = stop
            if end >= 0:
                number += 1
                yield Line(number, None if dropped else bytes(pending), length, quotes)
                pending.clear()
                length = quotes = 0
                dropped = False
    if length:
        yield Line(number + 1, None if dropped else bytes(pending), length, quotes)
