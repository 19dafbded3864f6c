"""The text steps composed: NULs gone, placeholders and scrubber finds counted, empty notes rejected."""

from __future__ import annotations

import pytest

from components.clinical_example_gen import records, text_steps
from components.clinical_example_gen.records import NoteRecord, ProcessedNote, Reject
from components.clinical_text import phi_tokens


def _record(text: str) -> NoteRecord:
    return NoteRecord("n1", "g1", text, ("label",), {"note_type": "Nursing"}, "notes.jsonl:line 4")


def test_a_note_is_normalized_deidentified_and_segmented() -> None:
    note = text_steps.TextSteps()(
        _record("Admitted [**2150-1-1**] wi\x00th chest pain.\r\nSeen by Dr. Jones.")
    )
    assert isinstance(note, ProcessedNote)
    assert "\x00" not in note.text and "\r" not in note.text and "[**" not in note.text
    assert "Jones" not in note.text
    assert note.phi_counts == {phi_tokens.DATE: 1, phi_tokens.NAME: 1}
    assert len(note.sentences) == 2 and all(sentence in note.text for sentence in note.sentences)
    assert (note.note_id, note.group_id, note.labels, note.note_type) == ("n1", "g1", ("label",), "Nursing")


def test_scrubber_config_reaches_the_scrubber() -> None:
    text = "Seen by Dr. Jones today."
    names_off = {"titled_names": False, "untitled_names": False, "locations": False}
    assert "Jones" in text_steps.TextSteps(names_off)(_record(text)).text
    with pytest.raises(ValueError, match="unknown ScrubberConfig keys"):
        text_steps.TextSteps({"names": False})


def test_nothing_left_after_normalization_is_empty_text() -> None:
    result = text_steps.TextSteps()(_record("\x00 \u200b\n\x00"))
    assert result == Reject("notes.jsonl:line 4", records.EMPTY_TEXT)


def test_a_failing_step_names_the_record_not_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(text: str) -> list[str]:
        raise ValueError(f"cannot segment {text!r}")

    monkeypatch.setattr(text_steps.segment, "segment_sentences", explode)
    with pytest.raises(text_steps.TextStepError) as raised:
        text_steps.TextSteps()(_record("CANARY note text"))
    assert "notes.jsonl:line 4" in str(raised.value) and "CANARY" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__traceback__ is not None


def _spanned(text: str, mentions: list[tuple[str, str]]) -> NoteRecord:
    spans = []
    for mention, kind in mentions:
        start = text.index(mention)
        spans.append(records.Span(start, start + len(mention), kind))
    return NoteRecord("n1", "g1", text, (), {}, "notes.jsonl:line 4", spans=tuple(spans))


def test_spans_move_with_every_change_of_length_before_and_inside_them() -> None:
    # CRLF, NULs, a tab run and a scrubbed name before the mentions, a NUL inside one: each
    # span still covers its mention in the processed text.
    text = "Seen by Dr. Jones\r\n\ttoday\x00 for:  breast\x00 cancer and Lynch syndrome.\r\nNo fever."
    note = text_steps.TextSteps()(
        _spanned(text, [("breast\x00 cancer", "Disease"), ("Lynch syndrome", "Disease")])
    )
    assert isinstance(note, ProcessedNote) and note.phi_counts == {phi_tokens.NAME: 1}
    assert [note.text[s.start : s.end] for s in note.spans] == ["breast cancer", "Lynch syndrome"]
    assert [s.type for s in note.spans] == ["Disease", "Disease"]


def test_a_note_without_annotations_keeps_no_spans_and_an_annotated_one_without_entities_keeps_none():
    assert text_steps.TextSteps()(_record("Chest pain.")).spans is None
    assert text_steps.TextSteps()(_spanned("Chest pain.", [])).spans == ()


def test_a_mention_that_processing_empties_or_marks_in_the_text_are_rejected() -> None:
    emptied = text_steps.TextSteps()(_spanned("Pain \x00\x00 here.", [("\x00\x00", "Disease")]))
    assert emptied == Reject(
        "notes.jsonl:line 4", records.BAD_SPANS, "a mention became empty in text processing"
    )
    marked = text_steps.TextSteps()(_spanned("Pain \ue000 here.", [("Pain", "Disease")]))
    assert marked == Reject("notes.jsonl:line 4", records.BAD_SPANS, "the text holds U+E000 or U+E001")


def test_unmarking_refuses_marks_that_do_not_pair() -> None:
    open_, close = text_steps.SPAN_OPEN, text_steps.SPAN_CLOSE
    assert text_steps.unmark_spans(f"a {open_}b c", ["T"]) == "a span mark was lost in text processing"
    assert (
        text_steps.unmark_spans(f"a {open_}b{close} c", ["T", "T"])
        == "a span mark was lost in text processing"
    )
    assert text_steps.unmark_spans(f"a {open_} b {close}c", ["T"]) == ("a  b c", (records.Span(3, 4, "T"),))
