"""The CoNLL/IOB reader: what a record is, how its spans index its text, and what a bad line rejects."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest

from components.clinical_example_gen import conll_reader, readers, records
from components.clinical_example_gen.records import NoteRecord, Reject

MAX = 1000
REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample" / "ncbi_disease_conll"
OFFICIAL = REPO.parent / "shared" / "data" / "ncbi_disease" / "conll"


def read(path: Path, config: dict | None = None, max_bytes: int = MAX, name: str | None = None) -> list:
    reader = readers.make_reader("conll", config or {}, max_bytes)
    return list(reader(str(path), name or path.name))


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def notes(items: list) -> list[NoteRecord]:
    return [item for item in items if isinstance(item, NoteRecord)]


def rejects(items: list) -> dict[str, tuple[str, str]]:
    return {item.locator: (item.reason, item.detail) for item in items if isinstance(item, Reject)}


def mentions(note: NoteRecord) -> list[tuple[str, str]]:
    return [(note.text[span.start : span.end], span.type) for span in note.spans]


def tagged(words: str, tags: str) -> list[str]:
    """Token lines from a sentence and its tags, both space-separated."""
    return [f"{word}\t{tag}" for word, tag in zip(words.split(), tags.split(), strict=True)]


def test_docstart_lines_make_documents_of_newline_joined_sentences(tmp_path: Path) -> None:
    path = write(
        tmp_path / "docs.tsv",
        [
            "-DOCSTART-\tO",  # line 1
            "",
            *tagged("Familial Behçet disease .", "B-Disease I-Disease I-Disease O"),  # lines 3-6
            "",
            *tagged("No ataxia seen", "O B-Disease O"),  # lines 8-10
            "",
            "-DOCSTART-\tO",  # line 12
            "",
            *tagged("Breast cancer", "B-Disease I-Disease"),  # lines 14-15
            "",
        ],
    )
    got = read(path)
    assert [(n.note_id, n.group_id, n.locator, n.text) for n in got] == [
        ("docs.tsv:3", "docs.tsv:3", "docs.tsv:line 3", "Familial Behçet disease .\nNo ataxia seen"),
        ("docs.tsv:14", "docs.tsv:14", "docs.tsv:line 14", "Breast cancer"),
    ]
    assert [mentions(n) for n in got] == [
        [("Familial Behçet disease", "Disease"), ("ataxia", "Disease")],
        [("Breast cancer", "Disease")],
    ]
    assert got[0].spans == (records.Span(0, 23, "Disease"), records.Span(29, 35, "Disease"))
    assert (got[0].labels, got[0].metadata) == ((), {"source_format": "conll"})


def test_doc_id_column_starts_a_document_where_its_value_changes(tmp_path: Path) -> None:
    lines = ["d1\tFever\tB-Sign", "d1\tresolved\tO", "", "d1\tCough\tB-Sign", "d2\tRash\tB-Sign", "d2\t.\tO"]
    got = read(write(tmp_path / "ids.tsv", lines), {"doc_id_column": 0, "token_column": 1})
    assert [(n.note_id, n.group_id, n.locator, n.text) for n in got] == [
        ("d1", "d1", "ids.tsv:line 1", "Fever resolved\nCough"),
        ("d2", "d2", "ids.tsv:line 5", "Rash ."),
    ]
    assert [mentions(n) for n in got] == [[("Fever", "Sign"), ("Cough", "Sign")], [("Rash", "Sign")]]


def test_without_documents_each_sentence_is_a_record_and_its_own_group(tmp_path: Path) -> None:
    lines = ["", *tagged("Gout flares", "B-Disease O"), "", "", *tagged("Anemia", "B-Disease"), ""]
    got = read(write(tmp_path / "s.tsv", lines))
    assert [(n.note_id, n.group_id, n.locator, n.text) for n in got] == [
        ("s.tsv:2", "s.tsv:2", "s.tsv:line 2", "Gout flares"),
        ("s.tsv:6", "s.tsv:6", "s.tsv:line 6", "Anemia"),
    ]
    whole = read(tmp_path / "s.tsv", {"record": "document"})
    assert [(n.note_id, n.text, mentions(n)) for n in whole] == [
        ("s.tsv:2", "Gout flares\nAnemia", [("Gout", "Disease"), ("Anemia", "Disease")])
    ]


def test_sentence_records_of_a_document_file_are_grouped_by_their_document(tmp_path: Path) -> None:
    lines = ["-DOCSTART-", "", "A\tO", "", "B\tO", "-DOCSTART-", "C\tO"]
    got = read(write(tmp_path / "d.tsv", lines), {"record": "sentence"})
    assert [(n.note_id, n.group_id, n.text) for n in got] == [
        ("d.tsv:3", "d.tsv:3", "A"),
        ("d.tsv:5", "d.tsv:3", "B"),
        ("d.tsv:7", "d.tsv:7", "C"),
    ]


def test_spans_are_code_point_offsets_of_the_space_joined_words(tmp_path: Path) -> None:
    sentences = [
        ("Sjögren ’s syndrome and naïve T - cell lymphoma", "B-D I-D I-D O B-C I-C I-C I-C B-D"),
        ("IgA nephropathy , type 2 diabetes ; 😷 flu", "B-D I-D O B-D I-D I-D O O B-D"),
    ]
    lines = []
    for words, tags in sentences:
        lines += [*tagged(words, tags), ""]
    expected = []
    for words, tags in sentences:
        runs: list[tuple[list[str], str]] = []
        for word, tag in zip(words.split(), tags.split(), strict=True):
            if tag.startswith("B-"):
                runs.append(([word], tag[2:]))
            elif tag.startswith("I-"):
                runs[-1][0].append(word)
        expected += [(" ".join(run), kind) for run, kind in runs]
    (got,) = read(write(tmp_path / "u.conll", ["-DOCSTART-", *lines]))
    assert got.text == "\n".join(words for words, _ in sentences)
    assert mentions(got) == expected
    assert all(a.end <= b.start for a, b in itertools.pairwise(got.spans))


def test_a_malformed_line_rejects_only_its_sentence_and_names_the_line(tmp_path: Path) -> None:
    lines = [
        *tagged("Good one", "O O"),  # 1-2: kept
        "",
        "three\tcolumns\tO",  # 4: wrong width
        "fine\tO",
        "",
        "fine\tO",  # 7
        "secretword\tX-Disease",  # 8: unknown tag
        "",
        "secretword\tI-Disease",  # 10: I- without B-
        "",
        "secretword\tB-Disease",  # 12
        "secretword\tI-Chemical",  # 13: I- of another type
        "",
        "fine\tO",  # 15
        "   \tO",  # 16: empty token
        "",
        "fine\t" + "X" * 60,  # 18: unknown tag, shown cut to 40 characters
        "",
        *tagged("Also kept", "O B-Disease"),  # 20-21
    ]
    got = read(write(tmp_path / "bad.tsv", lines))
    assert [(n.locator, n.text) for n in notes(got)] == [
        ("bad.tsv:line 1", "Good one"),
        ("bad.tsv:line 20", "Also kept"),
    ]
    malformed = records.MALFORMED_CONLL
    assert rejects(got) == {
        "bad.tsv:line 4": (malformed, "line 4: 3 columns, expected 2"),
        "bad.tsv:line 7": (malformed, "line 8: unknown tag 'X-Disease'"),
        "bad.tsv:line 10": (malformed, "line 10: I-Disease does not continue a Disease entity"),
        "bad.tsv:line 12": (malformed, "line 13: I-Chemical does not continue a Chemical entity"),
        "bad.tsv:line 15": (malformed, "line 16: empty token"),
        "bad.tsv:line 18": (malformed, f"line 18: unknown tag '{'X' * 40}'"),
    }
    assert not any("secretword" in detail for _, detail in rejects(got).values())


def test_a_malformed_line_rejects_only_its_document(tmp_path: Path) -> None:
    lines = [
        "-DOCSTART-",
        "Fine\tO",
        "",
        "-DOCSTART-",
        "Bad\tI-Disease",
        "",
        "Fine\tO",
        "-DOCSTART-",
        "Ok\tO",
    ]
    got = read(write(tmp_path / "docs.iob", lines))
    assert [n.locator for n in notes(got)] == ["docs.iob:line 2", "docs.iob:line 9"]
    assert rejects(got) == {
        "docs.iob:line 5": (records.MALFORMED_CONLL, "line 5: I-Disease does not continue a Disease entity")
    }


def test_configured_types_make_other_types_unknown_tags(tmp_path: Path) -> None:
    lines = [*tagged("aspirin for gout", "B-Chemical O B-Disease"), "", *tagged("gout", "B-Disease")]
    got = read(write(tmp_path / "t.tsv", lines), {"types": ["Disease"]})
    assert rejects(got) == {"t.tsv:line 1": (records.MALFORMED_CONLL, "line 1: unknown tag 'B-Chemical'")}
    assert [mentions(n) for n in notes(got)] == [[("gout", "Disease")]]


def test_the_first_line_or_columns_fixes_the_width_and_whitespace_can_delimit(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.conll", ["Heart NN B-Disease", "failure NN I-Disease", "", "x O", "", "y NN O"]
    )
    got = read(path, {"delimiter": None})
    assert [(n.text, mentions(n)) for n in got if isinstance(n, NoteRecord)] == [
        ("Heart failure", [("Heart failure", "Disease")]),
        ("y", []),
    ]
    assert rejects(got) == {"w.conll:line 4": (records.MALFORMED_CONLL, "line 4: 2 columns, expected 3")}
    got = read(path, {"delimiter": None, "columns": 2})
    assert rejects(got) == {
        "w.conll:line 1": (records.MALFORMED_CONLL, "line 1: 3 columns, expected 2"),
        "w.conll:line 6": (records.MALFORMED_CONLL, "line 6: 3 columns, expected 2"),
    }
    one_column = read(write(tmp_path / "one.tsv", ["word", "", "word"]))
    assert set(rejects(one_column).values()) == {
        (records.MALFORMED_CONLL, f"line {n}: 1 column, too few for the configured columns") for n in (1, 3)
    }


def test_encoding_size_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "enc.tsv"
    path.write_bytes(
        b"\xef\xbb\xbfFirst\tO\r\n\r\n"  # 1: BOM and CRLF, kept
        b"bad\xff\tO\n\n"  # 3: not UTF-8
        + b"long\tO\n" * 300  # 5-304: 1,499 bytes of text, over 1,000
        + b"\n"
        + b"x" * 70_000  # 306: a line over the cap, never held
        + b"\tO\n\nLast\tO\n"  # 308
    )
    got = read(path)
    assert [(n.note_id, n.text) for n in notes(got)] == [("enc.tsv:1", "First"), ("enc.tsv:308", "Last")]
    assert rejects(got) == {
        "enc.tsv:line 3": (records.UNREADABLE_ENCODING, "line 3: not UTF-8"),
        "enc.tsv:line 5": (records.OVERSIZE, ""),
        "enc.tsv:line 306": (records.OVERSIZE, f"line 306: longer than {MAX + 64 * 1024} bytes"),
    }
    exact = tmp_path / "exact.tsv"
    exact.write_text("é\tO\n" * 333 + "ab\tO\n")  # 333 * 2 + 332 + 1 + 2 = 1,001 bytes
    assert [r.reason for r in read(exact)] == [records.OVERSIZE]
    assert [len(n.text.encode()) for n in read(exact, max_bytes=1001)] == [1001]


def test_empty_files_hold_no_records(tmp_path: Path) -> None:
    assert read(write(tmp_path / "empty.tsv", [])) == []
    assert read(write(tmp_path / "blank.tsv", ["", "  ", "-DOCSTART-\tO", ""])) == []


def test_gzip_files_are_found_and_read_through_make_reader(tmp_path: Path) -> None:
    (tmp_path / "part").mkdir()
    with gzip.open(tmp_path / "part" / "a.conll.gz", "wt", encoding="utf-8") as stream:
        stream.write("Lupus\tB-Disease\n\n")
    write(tmp_path / "b.iob", ["Gout\tB-Disease"])
    write(tmp_path / "notes.csv", ["not\tCoNLL"])
    found = readers.list_input_files(str(tmp_path), "conll")
    assert [name for _, name in found] == ["b.iob", "part/a.conll.gz"]
    reader = readers.make_reader("conll", {}, MAX)
    got = [item for path, name in found for item in reader(path, name)]
    assert [(n.locator, mentions(n)) for n in got] == [
        ("b.iob:line 1", [("Gout", "Disease")]),
        ("part/a.conll.gz:line 1", [("Lupus", "Disease")]),
    ]


def test_bad_settings_fail_at_make_reader() -> None:
    assert "conll" in readers.INPUT_FORMATS
    assert readers.FILE_SUFFIXES["conll"] == (".tsv", ".conll", ".iob", ".tsv.gz", ".conll.gz", ".iob.gz")
    assert conll_reader.ConllConfig.from_dict({"types": ["Disease"]}).types == ("Disease",)
    for config, message in [
        ({"tag": 1}, "unknown keys"),
        ({"record": "paragraph"}, "record must be one of"),
        ({"tag_column": 0}, "different columns"),
        ({"columns": 3, "token_column": 2}, "different columns of 3"),
        ({"columns": 1}, "at least 2"),
        ({"delimiter": ""}, "delimiter"),
        ({"doc_id_column": "0"}, "doc_id_column must be an integer"),
        ({"types": "Disease"}, "types must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            readers.make_reader("conll", config, MAX)


def _file_counts(path: Path) -> tuple[int, int]:
    """Sentences and B- tags of a CoNLL file, counted from its lines alone."""
    lines = path.read_text(encoding="utf-8").split("\n")
    sentences = sum(1 for line, after in itertools.pairwise(lines) if line.strip() and not after.strip())
    return sentences, sum(1 for line in lines if line.endswith("\tB-Disease"))


def _check_ncbi(folder: Path, expected: dict[str, tuple[int, int]]) -> None:
    for split, (sentence_count, mention_count) in expected.items():
        path = folder / f"{split}.tsv"
        got = read(path, max_bytes=readers.DEFAULT_MAX_NOTE_BYTES)
        assert rejects(got) == {}, split
        assert _file_counts(path) == (sentence_count, mention_count), split
        assert (len(got), sum(len(n.spans) for n in got)) == (sentence_count, mention_count), split
        assert {span.type for n in got for span in n.spans} == {"Disease"}
        assert all("\n" not in n.text and all(m == m.strip() and m for m, _ in mentions(n)) for n in got), (
            split
        )


def test_the_bundled_ncbi_sample_reads_with_no_rejects() -> None:
    _check_ncbi(SAMPLE, {"train": (400, 400), "devel": (100, 91), "test": (100, 96)})
    (first,) = read(SAMPLE / "train.tsv", max_bytes=readers.DEFAULT_MAX_NOTE_BYTES)[:1]
    assert first.locator == "train.tsv:line 1" and first.group_id == first.note_id == "train.tsv:1"


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="the shared NCBI-disease corpus is not present")
def test_the_official_ncbi_files_read_with_no_rejects_and_their_counts() -> None:
    # BLURB publishes train 5,424 sentences / 5,134 mentions; the spyysalo/ncbi-disease files that
    # BLURB distributes hold 5,432 / 5,145 (devel and test match: 923 / 787 and 940 / 960).
    _check_ncbi(OFFICIAL, {"train": (5432, 5145), "devel": (923, 787), "test": (940, 960)})
