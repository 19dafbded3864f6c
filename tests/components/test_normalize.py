"""Text normalization and MIMIC placeholder mapping, on synthetic strings and the MTSamples sample."""

import csv
import random
from pathlib import Path

import pytest

from components.clinical_text import phi_tokens
from components.clinical_text.normalize import normalize_text, replace_mimic_placeholders

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "mtsamples_sample.csv"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hgb １２.５ g/dL", "Hgb 12.5 g/dL"),  # fullwidth digits
        ("ﬁbrosis and ﬂutter", "fibrosis and flutter"),  # ligatures
        ("81\u00a0mg daily", "81 mg daily"),  # non-breaking space
        ("Ｎａ 138", "Na 138"),  # fullwidth letters
        ("cafe\u0301", "café"),  # combining accent composed
        ("x\u2009y\u3000z", "x y z"),  # thin and ideographic spaces
        ("BP 120/80\r\nHR 72\rRR 16", "BP 120/80\nHR 72\nRR 16"),
        ("aspi\x00rin\x07 81 mg", "aspirin 81 mg"),  # NUL and BEL removed
        ("\ufeffzero\u200bwidth soft\u00adhyphen", "zerowidth softhyphen"),  # BOM, ZWSP, soft hyphen
        ("dose:\t81\tmg", "dose: 81 mg"),  # tabs become spaces
        ("too    many   spaces", "too many spaces"),
        ("trailing   \nspaces \t\nhere", "trailing\nspaces\nhere"),
        ("page one\fpage two", "page one\npage two"),  # form feed is a line break
        ("  \n\n leading and trailing \n\n ", "leading and trailing"),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_paragraph_breaks_are_kept_and_longer_gaps_collapse():
    text = "HPI:\nCough.\n\nPLAN:\nRest.\n\n\n\n\nMEDS:\r\n\r\n\r\n\r\nNone."
    assert normalize_text(text) == "HPI:\nCough.\n\nPLAN:\nRest.\n\nMEDS:\n\nNone."
    # Lines holding only spaces count as blank.
    assert normalize_text("one\n \n\t\n  \ntwo") == "one\n\ntwo"


def test_normalize_is_idempotent_on_random_strings():
    alphabet = [*"ab1 .\n\r\t", "\x00", "\x0b", "\u00a0", "\u0301", "\u200b", "ﬁ", "１", "\u2028", "\ufeff"]
    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        once = normalize_text(text)
        assert normalize_text(once) == once, repr(text)


def test_normalize_on_the_mtsamples_sample():
    with SAMPLE.open(newline="", encoding="utf-8") as handle:
        notes = [row["transcription"] for row in csv.DictReader(handle)]
    for note in notes:
        once = normalize_text(note)
        assert normalize_text(once) == once
        assert "\r" not in once and "\t" not in once and "  " not in once and "\n\n\n" not in once
        assert once == once.strip()


MIMIC_CASES = [
    # dates
    ("[**2101-10-20**]", phi_tokens.DATE),
    ("[**10-20**]", phi_tokens.DATE),
    ("[**2101-10**]", phi_tokens.DATE),
    ("[**2188**]", phi_tokens.DATE),
    ("[**Month (only) 123**]", phi_tokens.DATE),
    ("[**Year (4 digits) 123**]", phi_tokens.DATE),
    ("[**Year (2 digits) 12**]", phi_tokens.DATE),
    ("[**Month/Day 1**]", phi_tokens.DATE),
    ("[**Month/Day/Year 2**]", phi_tokens.DATE),
    ("[**Month/Year 1**]", phi_tokens.DATE),
    ("[**Date range (1) 12**]", phi_tokens.DATE),
    ("[**Day Month 4**]", phi_tokens.DATE),
    ("[**Holiday 123**]", phi_tokens.DATE),
    # names
    ("[**Last Name (NamePattern1) 123**]", phi_tokens.NAME),
    ("[**Last Name (STitle) **]", phi_tokens.NAME),
    ("[**First Name8 (NamePattern2) 123**]", phi_tokens.NAME),
    ("[**First Name11 (Name Pattern1) 12**]", phi_tokens.NAME),
    ("[**Known lastname 123**]", phi_tokens.NAME),
    ("[**Known firstname 12**]", phi_tokens.NAME),
    ("[**Doctor First Name 12**]", phi_tokens.NAME),
    ("[**Doctor Last Name 1**]", phi_tokens.NAME),
    ("[**Name (NI) 123**]", phi_tokens.NAME),
    ("[**Name6 (MD) 12**]", phi_tokens.NAME),
    ("[**Name Initial (PRE) 1**]", phi_tokens.NAME),
    ("[**Initials (NamePattern4) 1**]", phi_tokens.NAME),
    ("[**Initial (NamePattern1) 12**]", phi_tokens.NAME),
    ("[**Female First Name (un) 12**]", phi_tokens.NAME),
    ("[**Male First Name (un) 3**]", phi_tokens.NAME),
    ("[**Attending Info 12**]", phi_tokens.NAME),
    ("[**Dictator Info 1**]", phi_tokens.NAME),
    # hospitals and wards
    ("[**Hospital1 18**]", phi_tokens.HOSPITAL),
    ("[**Hospital 1234**]", phi_tokens.HOSPITAL),
    ("[**Hospital Unit Name 10**]", phi_tokens.HOSPITAL),
    ("[**Hospital Ward Name 12**]", phi_tokens.HOSPITAL),
    ("[**Wardname 1**]", phi_tokens.HOSPITAL),
    # locations and organizations
    ("[**Location (un) 123**]", phi_tokens.LOCATION),
    ("[**Location (Universities) 12**]", phi_tokens.LOCATION),
    ("[**Street Address(1) 12**]", phi_tokens.LOCATION),
    ("[**Apartment Address(1) 1**]", phi_tokens.LOCATION),
    ("[**State 12**]", phi_tokens.LOCATION),
    ("[**State/Zipcode 1**]", phi_tokens.LOCATION),
    ("[**Country 12**]", phi_tokens.LOCATION),
    ("[**Company 12**]", phi_tokens.LOCATION),
    ("[**University/College 12**]", phi_tokens.LOCATION),
    # contact details
    ("[**Telephone/Fax (1) 123**]", phi_tokens.PHONE),
    ("[**Telephone/Fax (3) 12**]", phi_tokens.PHONE),
    ("[**Pager number 12**]", phi_tokens.PHONE),
    ("[**E-mail address 12**]", phi_tokens.EMAIL),
    ("[**URL 12**]", phi_tokens.URL),
    ("[**CC Contact Info 12**]", phi_tokens.CONTACT),
    # identifiers
    ("[**Medical Record Number 123**]", phi_tokens.ID),
    ("[**MD Number(1) 12**]", phi_tokens.ID),
    ("[**MD Number(3) 1**]", phi_tokens.ID),
    ("[**Unit Number 12**]", phi_tokens.ID),
    ("[**Social Security Number 12**]", phi_tokens.ID),
    ("[**Serial Number 12**]", phi_tokens.ID),
    ("[**Job Number 123**]", phi_tokens.ID),
    ("[**Provider Number 12**]", phi_tokens.ID),
    ("[**Numeric Identifier 12**]", phi_tokens.ID),
    ("[**Clip Number (Radiology) 12**]", phi_tokens.ID),
    # ages, empty and unknown placeholders
    ("[**Age over 90 **]", phi_tokens.AGE),
    ("[**Age over 90 123**]", phi_tokens.AGE),
    ("[****]", phi_tokens.OTHER),
    ("[**Something New 12**]", phi_tokens.OTHER),
]


@pytest.mark.parametrize(("placeholder", "token"), MIMIC_CASES)
def test_mimic_placeholder_mapping(placeholder, token):
    text, counts = replace_mimic_placeholders(f"Seen on {placeholder} in clinic.")
    assert text == f"Seen on {token} in clinic."
    assert counts == {token: 1}


def test_mimic_placeholders_in_a_note_and_their_counts():
    note = (
        "Admission Date: [**2101-10-20**] Discharge Date: [**2101-10-25**]\n\n"
        "Mr. [**Known lastname 123**] is an [**Age over 90 **] year old man seen by "
        "Dr. [**First Name8 (NamePattern2) 4**] [**Last Name (NamePattern1) 5**] at [**Hospital1 18**]. "
        "Call [**Telephone/Fax (1) 6**]. Blood pressure 120/80 [****]."
    )
    text, counts = replace_mimic_placeholders(note)
    assert text == (
        "Admission Date: [DATE] Discharge Date: [DATE]\n\n"
        "Mr. [NAME] is an [AGE] year old man seen by Dr. [NAME] [NAME] at [HOSPITAL]. "
        "Call [PHONE]. Blood pressure 120/80 [PHI]."
    )
    assert counts == {"[DATE]": 2, "[NAME]": 3, "[AGE]": 1, "[HOSPITAL]": 1, "[PHONE]": 1, "[PHI]": 1}


def test_text_without_placeholders_is_unchanged():
    text = "No placeholders here: [DATE] stays, [** is not closed, and [*] is not one."
    assert replace_mimic_placeholders(text) == (text, {})


def test_typed_tokens_survive_normalization():
    text, _ = replace_mimic_placeholders("On [**2101-1-2**]\u00a0at [**Hospital1 1**]")
    assert normalize_text(text) == "On [DATE] at [HOSPITAL]"
