"""De-identification options beside the rules: surrogates, a tagger's findings, the i2b2 XML reader."""

import pytest

from components.clinical_example_gen import readers
from components.clinical_example_gen.i2b2_reader import parse_i2b2
from components.clinical_example_gen.records import NoteRecord, Reject
from components.clinical_text.scrub import Scrubber, ScrubberConfig

NOTE = "Seen by Dr. Brannagh on 03/14/2021 and 3/20/2021; Dr. Brannagh called 617-555-0123."
REALISTIC = ScrubberConfig(surrogates="realistic", surrogate_key="k1")


def test_surrogates_are_consistent_within_a_patient_and_differ_across():
    first = Scrubber(REALISTIC).scrub(NOTE, patient="p1").text
    again = Scrubber(REALISTIC).scrub(NOTE, patient="p1").text
    other = Scrubber(REALISTIC).scrub(NOTE, patient="p2").text
    assert first == again and first != other
    assert "Brannagh" not in first and "617-555-0123" not in first and "[" not in first
    names = [word for word in first.split() if word not in NOTE.split()]
    assert names  # surrogates took the identifiers' places


def test_surrogate_dates_keep_their_interval():
    import datetime
    import re

    text = Scrubber(REALISTIC).scrub("from 03/14/2021 to 03/20/2021", patient="p9").text
    dates = [datetime.datetime.strptime(d, "%m/%d/%Y").date() for d in re.findall(r"\d\d/\d\d/\d{4}", text)]
    assert len(dates) == 2 and (dates[1] - dates[0]).days == 6
    assert dates[0] != datetime.date(2021, 3, 14)


def test_invalid_surrogate_mode_is_rejected():
    with pytest.raises(ValueError, match="surrogates must be one of"):
        ScrubberConfig(surrogates="fake")


class FakeTagger:
    """Stands in for a trained PHI tagger: tags the word 'Zorblat' as a name."""

    def tag(self, text):
        start = text.find("Zorblat")
        return [(start, start + 7, "name")] if start >= 0 else []


def test_tagger_findings_join_the_rules():
    text = "zorblat? no: Zorblat visited on 03/14/2021"
    assert "Zorblat" in Scrubber().scrub(text).text
    result = Scrubber(taggers=[FakeTagger()]).scrub(text)
    assert result.text == "zorblat? no: [NAME] visited on [DATE]"


def test_tagger_with_a_bad_span_fails_clearly():
    class Broken:
        def tag(self, text):
            return [(5, 2, "name")]

    with pytest.raises(ValueError, match="Broken gave an invalid span 5-2"):
        Scrubber(taggers=[Broken()]).find("some text here")


XML = """<?xml version="1.0" encoding="UTF-8" ?>
<deIdi2b2><TEXT><![CDATA[Record date: 2090-07-12
Seen by Dr. Quill at Mercy Hospital.]]></TEXT>
<TAGS>
<DATE id="P0" start="13" end="23" text="2090-07-12" TYPE="DATE" comment="" />
<NAME id="P1" start="36" end="41" text="Quill" TYPE="DOCTOR" comment="" />
<LOCATION id="P2" start="45" end="59" text="Mercy Hospital" TYPE="HOSPITAL" comment="" />
</TAGS></deIdi2b2>"""


def test_i2b2_xml_parses_text_and_typed_spans():
    text, spans = parse_i2b2(XML.encode())
    assert [(text[s.start : s.end], s.type) for s in spans] == [
        ("2090-07-12", "DATE"),
        ("Quill", "DOCTOR"),
        ("Mercy Hospital", "HOSPITAL"),
    ]
    assert [s.type for s in parse_i2b2(XML.encode(), use_category=True)[1]] == ["DATE", "NAME", "LOCATION"]


def test_i2b2_reader_yields_records_and_rejects_bad_offsets(tmp_path):
    (tmp_path / "220-01.xml").write_text(XML)
    (tmp_path / "221-02.xml").write_text(XML.replace('start="36"', 'start="35"'))
    read = readers.make_reader("i2b2", {}, readers.DEFAULT_MAX_NOTE_BYTES)
    results = [r for path, name in readers.list_input_files(str(tmp_path), "i2b2") for r in read(path, name)]
    good, bad = results
    assert isinstance(good, NoteRecord) and good.group_id == "220" and len(good.spans) == 3
    assert isinstance(bad, Reject) and "TAGS[1] (NAME)" in bad.detail and "Quill" not in bad.detail
