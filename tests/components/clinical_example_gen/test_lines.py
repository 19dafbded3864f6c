"""Streaming lines: bounded memory per line, counts kept for dropped lines, gzip handled."""

from __future__ import annotations

import gzip
import io

import pytest

from components.clinical_example_gen import lines


@pytest.fixture(params=[3, 1 << 20], ids=["tiny-chunks", "default-chunks"])
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(lines, "_CHUNK_BYTES", request.param)
    return request.param


def test_lines_keep_short_and_drop_long_ones_whatever_the_chunking(chunk: int) -> None:
    data = b'a,"b"\n' + b"x" * 50 + b'"\n\nlast without newline'
    got = list(lines.physical_lines(io.BytesIO(data), keep=20))
    assert [line.number for line in got] == [1, 2, 3, 4]
    assert got[0].data == b'a,"b"\n' and got[0].quotes == 2
    assert got[1].data is None and got[1].length == 52 and got[1].quotes == 1
    assert got[2].data == b"\n"
    assert got[3].data == b"last without newline" and got[3].length == 20


def test_no_lines_in_an_empty_stream() -> None:
    assert list(lines.physical_lines(io.BytesIO(b""), keep=10)) == []


def test_open_binary_inflates_gzip(tmp_path) -> None:
    path = tmp_path / "notes.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id": 1}\n{"id": 2}\n'))
    with lines.open_binary(str(path)) as stream:
        got = [line.data for line in lines.physical_lines(stream, keep=100)]
    assert got == [b'{"id": 1}\n', b'{"id": 2}\n']
