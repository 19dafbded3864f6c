"""Tests for clinical sentence segmentation: synthetic hazards, then every note of the shipped sample."""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path

import pytest

from components.clinical_text.segment import segment_sentences, segment_spans

SAMPLE_CSV = Path(__file__).resolve().parents[2] / "data" / "sample" / "mtsamples_sample.csv"

# The abbreviations the issue lists; a sentence must not end after one when lowercase or a digit follows.
LISTED_ABBREVIATION_AT_END = re.compile(
    r"(?<![\w.])(?:Dr|Mr|Mrs|pt|b\.i\.d|t\.i\.d|q\.i\.d|q\.4h|p\.o|p\.r\.n|e\.g|i\.e|vs|approx|St|No)\.\Z",
    re.IGNORECASE,
)
HEADER_AT_LINE_START = re.compile(r"(?m)^[A-Z][A-Z0-9 ,/&()'-]*[A-Z)]:")
DECIMAL = re.compile(r"\d+\.\d+")
INLINE_LIST_MARKER = re.compile(r"[^\S\n]+\d{1,2}[.)]\s")


def assert_valid_spans(text: str, spans: list[tuple[int, int]]) -> None:
    """Spans are ordered, stripped, separated by whitespace only, and cover all non-whitespace text."""
    position = 0
    for start, end in spans:
        assert position <= start < end, (start, end)
        assert text[position:start].strip() == ""
        assert not text[start].isspace() and not text[end - 1].isspace()
        position = end
    assert text[position:].strip() == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Seen by Dr. Smith today. Mr. Jones and Mrs. Lee agree.",
            ["Seen by Dr. Smith today.", "Mr. Jones and Mrs. Lee agree."],
        ),
        (
            "Admitted to St. Mary's, e.g. for rehab, i.e. short term. "
            "Tylenol No. 3 vs. ibuprofen approx. 5 days.",
            [
                "Admitted to St. Mary's, e.g. for rehab, i.e. short term.",
                "Tylenol No. 3 vs. ibuprofen approx. 5 days.",
            ],
        ),
        (
            "Metoprolol 25 mg p.o. b.i.d. and morphine p.r.n. pain. Keflex t.i.d. or q.i.d. as tolerated.",
            [
                "Metoprolol 25 mg p.o. b.i.d. and morphine p.r.n. pain.",
                "Keflex t.i.d. or q.i.d. as tolerated.",
            ],
        ),
        (
            "The pt. was seen. Discussed with pt. She agrees.",
            ["The pt. was seen.", "Discussed with pt.", "She agrees."],
        ),
        ("Answer: No. He declined.", ["Answer: No.", "He declined."]),
        (
            "Pain in the abd. and back since approx. noon. Fine.",
            ["Pain in the abd. and back since approx. noon.", "Fine."],
        ),
    ],
)
def test_abbreviations(text: str, expected: list[str]) -> None:
    assert segment_sentences(text) == expected


def test_dosing_abbreviation_ends_sentence_only_before_a_capital() -> None:
    """Documented rule: after q.4h. (or b.i.d., p.o., ...) a sentence ends only before an uppercase letter."""
    assert segment_sentences("Tylenol 650 mg q.4h. She will return in 2 weeks.") == [
        "Tylenol 650 mg q.4h.",
        "She will return in 2 weeks.",
    ]
    assert segment_sentences("Tylenol 650 mg q.4h. as needed for pain.") == [
        "Tylenol 650 mg q.4h. as needed for pain."
    ]
    assert segment_sentences("Tylenol 650 mg q.4h. 2 tablets were dispensed.") == [
        "Tylenol 650 mg q.4h. 2 tablets were dispensed."
    ]


def test_decimals_vertebral_levels_and_times_stay_whole() -> None:
    text = (
        "Give 2.5 mg now. Temperature 98.6 and weight 70.5 kg. Disc bulge at L4-5 and L5-S1. "
        "C5-C6 is normal. Seen at 10:30 a.m. and discharged at 3 p.m. Stable."
    )
    assert segment_sentences(text) == [
        "Give 2.5 mg now.",
        "Temperature 98.6 and weight 70.5 kg.",
        "Disc bulge at L4-5 and L5-S1.",
        "C5-C6 is normal.",
        "Seen at 10:30 a.m. and discharged at 3 p.m.",
        "Stable.",
    ]


def test_headers_and_lists_on_their_own_lines() -> None:
    text = (
        "HISTORY OF PRESENT ILLNESS: The patient is a 45-year-old man\n"
        "MEDICATIONS:\n1. Aspirin 81 mg daily.\n2. Lisinopril 10 mg daily\n- Metformin\n* Insulin\n"
        "FINDINGS:\nA. Scalp contusion.\nb. Rib fracture.\nII. Chronic changes."
    )
    assert segment_sentences(text) == [
        "HISTORY OF PRESENT ILLNESS: The patient is a 45-year-old man",
        "MEDICATIONS:",
        "1. Aspirin 81 mg daily.",
        "2. Lisinopril 10 mg daily",
        "- Metformin",
        "* Insulin",
        "FINDINGS:",
        "A. Scalp contusion.",
        "b. Rib fracture.",
        "II. Chronic changes.",
    ]


def test_inline_numbered_list_versus_values_after_a_colon() -> None:
    assert segment_sentences(
        "MEDICATIONS: 1. Aspirin 81 mg daily. 2. Lisinopril 10 mg b.i.d. 3. Metformin."
    ) == [
        "MEDICATIONS: 1. Aspirin 81 mg daily.",
        "2. Lisinopril 10 mg b.i.d.",
        "3. Metformin.",
    ]
    assert segment_sentences("Pulse: 64. Respirations: 20. Gravida: 1. Para: 1.") == [
        "Pulse: 64.",
        "Respirations: 20.",
        "Gravida: 1.",
        "Para: 1.",
    ]


def test_line_breaks_inside_a_sentence() -> None:
    text = (
        "He was seen by Dr.\nSmith in clinic and\nwas stable, with\n(mild) pain.\n"
        "Dictated by Dr.\nPLAN: Rest."
    )
    assert segment_sentences(text) == [
        "He was seen by Dr.\nSmith in clinic and\nwas stable, with\n(mild) pain.",
        "Dictated by Dr.",
        "PLAN: Rest.",
    ]


def test_blank_line_always_ends_a_sentence() -> None:
    text = "Referred by Dr.\n\nSmith will follow\n\nup in clinic. Pain is\n \nbetter"
    assert segment_sentences(text) == [
        "Referred by Dr.",
        "Smith will follow",
        "up in clinic.",
        "Pain is",
        "better",
    ]


def test_other_end_marks_and_closing_brackets() -> None:
    assert segment_sentences('What is it? Pain! (She left.) "Fine." Next') == [
        "What is it?",
        "Pain!",
        "(She left.)",
        '"Fine."',
        "Next",
    ]


@pytest.mark.parametrize("text", ["", "   ", "\n\n \n"])
def test_blank_text_has_no_sentences(text: str) -> None:
    assert segment_spans(text) == []


def test_spans_match_sentences_and_cover_the_text() -> None:
    text = "  CC: chest pain.\n\nHPI: Seen by Dr. Lee at 10:30.  Took 2.5 mg p.o.\n1. Rest.  \n"
    spans = segment_spans(text)
    assert_valid_spans(text, spans)
    assert segment_sentences(text) == [text[start:end] for start, end in spans]
    assert len(spans) == 4


@pytest.fixture(scope="module")
def sample_notes() -> list[str]:
    with SAMPLE_CSV.open(newline="", encoding="utf-8") as handle:
        notes = [row["transcription"].replace("\r\n", "\n").strip() for row in csv.DictReader(handle)]
    assert len(notes) == 587
    return notes


@pytest.fixture(scope="module")
def segmented(sample_notes: list[str]) -> list[tuple[str, list[tuple[int, int]]]]:
    return [(note, segment_spans(note)) for note in sample_notes]


def test_sample_spans_cover_every_note(segmented: list[tuple[str, list[tuple[int, int]]]]) -> None:
    for note, spans in segmented:
        assert_valid_spans(note, spans)


def test_sample_no_end_after_abbreviation_before_lowercase_or_digit(
    segmented: list[tuple[str, list[tuple[int, int]]]],
) -> None:
    """A digit that opens an inline list item ("b.i.d. 2. Metformin") may follow a sentence end."""
    checked = 0
    for note, spans in segmented:
        for start, end in spans:
            if not LISTED_ABBREVIATION_AT_END.search(note, start, end):
                continue
            following = re.match(r"[^\S\n]+(\S)", note[end:])
            if following is None or INLINE_LIST_MARKER.match(note, end):
                continue
            checked += 1
            assert not (following.group(1).islower() or following.group(1).isdigit()), (start, end)
        for match in re.finditer(r"(?<![\w.])(?:Dr|p\.o|p\.r\.n|b\.i\.d|i\.e)\.[^\S\n]+[a-z0-9]", note):
            assert any(start <= match.start() and match.end() <= end for start, end in spans)
            checked += 1
    assert checked > 100


def test_sample_never_splits_a_decimal(segmented: list[tuple[str, list[tuple[int, int]]]]) -> None:
    decimals = 0
    for note, spans in segmented:
        for match in DECIMAL.finditer(note):
            decimals += 1
            assert any(start <= match.start() and match.end() <= end for start, end in spans)
    assert decimals > 500


def test_sample_headers_begin_sentences(segmented: list[tuple[str, list[tuple[int, int]]]]) -> None:
    headers = 0
    for note, spans in segmented:
        starts = {start for start, _ in spans}
        for match in HEADER_AT_LINE_START.finditer(note):
            headers += 1
            assert match.start() in starts, match.start()
    assert headers > 1000


def test_sample_sentence_statistics(segmented: list[tuple[str, list[tuple[int, int]]]]) -> None:
    """Measured on this sample: median 66 chars, 0.2% over 400, 0.08% under 5, median 39 per note."""
    lengths = [end - start for _, spans in segmented for start, end in spans]
    assert 40 <= statistics.median(lengths) <= 110
    assert sum(length > 400 for length in lengths) / len(lengths) < 0.01
    assert sum(length < 5 for length in lengths) / len(lengths) < 0.01
    assert statistics.median(len(spans) for _, spans in segmented) >= 15
    assert min(len(spans) for _, spans in segmented) >= 2


def test_segmenting_writes_nothing(
    sample_notes: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    for note in sample_notes[:50]:
        segment_sentences(note)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert caplog.records == []
