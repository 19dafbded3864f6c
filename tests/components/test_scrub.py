"""The residual-PHI scrubber: each kind, clinical numbers that must survive, configuration, and recall
and precision on the synthetic corpus of `phi_synth`."""

import csv
import dataclasses
import itertools
import json
import logging
import random
import re
from pathlib import Path

import pytest

from components.clinical_text import phi_tokens
from components.clinical_text.normalize import normalize_text
from components.clinical_text.scrub import Finding, Scrubber, ScrubberConfig
from tests.components.phi_synth import PHI_KINDS, make_phi_corpus, score

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "mtsamples_sample.csv"
SCRUBBER = Scrubber()


def scrubbed(text, config=None):
    return (Scrubber(config) if config else SCRUBBER).scrub(text).text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # dates
        ("seen 03/14/2021.", "seen [DATE]."),
        ("seen 3/14/21 and 14-03-2021", "seen [DATE] and [DATE]"),
        ("on 2021-03-14 and 2021/3/4", "on [DATE] and [DATE]"),
        ("on March 14, 2021 and Mar. 14th 2021", "on [DATE] and [DATE]"),
        ("on 14 Mar 2021, 14-MAR-2021, 14th of March", "on [DATE], [DATE], [DATE]"),
        ("since Mar 14 and since SEPT 3", "since [DATE] and since [DATE]"),
        ("in March 2021, March of 2021 and 3/2021", "in [DATE], [DATE] and [DATE]"),
        ("dated 14.03.2021", "dated [DATE]"),
        ("from 3/14/2021-3/20/2021", "from [DATE]-[DATE]"),
        ("from Mar 14-16, 2021", "from [DATE]"),
        ("on 03/14/2021 L knee; 3/14/21 U/S", "on [DATE] L knee; [DATE] U/S"),
        # phones and faxes
        ("call (617) 555-0123 or 617-555-0123", "call [PHONE] or [PHONE]"),
        ("at 617.555.0123, +1 617 555 0123, 1-617-555-0123", "at [PHONE], [PHONE], [PHONE]"),
        ("fax: 617 555 0123. Or 617 5550123", "fax: [PHONE]. Or [PHONE]"),
        ("617-555-0123 ext. 42 or (617) 555-0123 x1234", "[PHONE] or [PHONE]"),
        ("pager #45678, beeper 1234", "pager #[PHONE], beeper [PHONE]"),
        ("UK office +44 20 7946 0958", "UK office [PHONE]"),
        # e-mail and URLs
        ("write to j.doe+clinic@mail.example.org.", "write to [EMAIL]."),
        ("see https://www.example.org/patients/4821.", "see [URL]."),
        ("see www.example.net/records?id=3, example.com/portal", "see [URL], [URL]"),
        ("(portal.example.org)", "([URL])"),
        # record numbers
        ("MRN: 12345678, MR# 1234567", "MRN: [ID], MR# [ID]"),
        ("medical record number 00123456", "medical record number [ID]"),
        ("MRN is 12345, MR number A-1234", "MRN is [ID], MR number [ID]"),
        ("Medical Record #: AB99887766", "Medical Record #: [ID]"),
        ("acct # 5566778, chart number 2233", "acct # [ID], chart number [ID]"),
        ("bare 4455667 number", "bare [ID] number"),
        # SSNs
        ("SSN 123-45-6789", "SSN [ID]"),
        ("social security number 123 45 6789", "social security number [ID]"),
        ("ssn:123456789", "ssn:[ID]"),
        # ages over 89
        ("a 92-year-old man", "a [AGE]-year-old man"),
        ("95 yo, 90 y/o, 101 years old", "[AGE] yo, [AGE] y/o, [AGE] years old"),
        ("age 95, aged 101, Age: 93", "age [AGE], aged [AGE], Age: [AGE]"),
        ("at the age of 90; 99 years of age", "at the age of [AGE]; [AGE] years of age"),
        ("a ninety-two-year-old woman", "a [AGE]-year-old woman"),
        ("now 95 years and frail", "now [AGE] years and frail"),
        # names after a title
        ("seen by Dr. Brannagh. Dr.Osei too", "seen by Dr. [NAME]. Dr.[NAME] too"),
        ("Dr. J. R. Okafor and Dr John A. Smith", "Dr. [NAME] and Dr [NAME]"),
        ("Mrs. O'Rourke-Vale, Mr. Lindqvist", "Mrs. [NAME], Mr. [NAME]"),
        ("Dr. X. He agreed. Dr. X's note.", "Dr. [NAME]. He agreed. Dr. [NAME]'s note."),
        ("Dr. M. Dr. N concurred.", "Dr. [NAME]. Dr. [NAME] concurred."),
        # names without a title or in lower case (policy of issue 18: names in any form)
        ("seen by dr smith; wife mary called", "seen by dr [NAME]; wife [NAME] called"),
        ("Kathy Lee, RN at bedside; son Jim updated", "[NAME], RN at bedside; son [NAME] updated"),
        ("spoke with dr. n. o'brien", "spoke with dr. [NAME]"),
        # dates without a year, month and holiday words (Safe Harbor: every date element but the year)
        ("returned 9/14, due 10/2; seen on the 3rd", "returned [DATE], due [DATE]; seen on the [DATE]"),
        (
            "home over Christmas, back in March or early May",
            "home over [DATE], back in [DATE] or early [DATE]",
        ),
        # locations smaller than a state
        ("lives at 12 Elm St., Framingham, MA 01701", "lives at [LOCATION], [LOCATION], MA [LOCATION]"),
        ("zip 02115; from Mercy Hospital to St. Luke's", "zip [LOCATION]; from [HOSPITAL] to [HOSPITAL]"),
        # phone forms
        ("home-617-555-0123, 617-555- 0123, 617/555-0123", "home-[PHONE], [PHONE], [PHONE]"),
        ("call 555-0123 or pager 4-1234; ext 345", "call [PHONE] or pager [PHONE]; ext [PHONE]"),
        ("in her late 90s", "in her late [AGE]"),
    ],
)
def test_each_kind(text, expected):
    assert scrubbed(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Aspirin 81 mg daily, warfarin 2.5 mg, digoxin 0.125 mg, KCl 10 mEq, 4 mg/kg.",
        "BP 120/80, HR 92, RR 18, SpO2 95%, T 98.6, weight 70 kg, height 5'10\", BMI 27.4.",
        "Na 138, K 4.2, Hgb 13.5, HbA1c 7.2%, pH 7.35, glucose 142 mg/dL, EF 55-60%.",
        "platelets 250000/uL, viral load 120000 copies/mL, nystatin 100000 units.",
        "Lorazepam 1/2 tab q.4h. prn; metoprolol b.i.d.; insulin q.h.s.; 2/3 of dose.",
        "MRI: disc bulge at L4-5 and C5-6, fusion at L5-S1 and T12-L1.",
        "Codes E11.9, I10, CPT 99213, ICD-10 J45.909, MIM 245000, PMID 12345678.",
        "Diagnosed in 2010; colonoscopy in 2015 was normal.",
        "A 72-year-old woman; an 89-year-old man; age 89; aged 45; 63 y/o.",
        "Given at 10:30 and 14:45; pain for 3-4 days, 2-3 times, 10-12 weeks.",
        "Strength 5/5, murmur 3/6, vision 20/20, Apgars 8/9, epinephrine 1:1000, G2P1, T2N0M0.",
        "12-lead ECG, GCS 15, 24-hour urine, 0.9% saline, 2+ pulses, 3 x 10^9/L.",
        "May 5 mg be given? May 3-4 mg help? Take 1-2 tablets. Titrate 5-10-15 mg. Smoked for 40 years.",
        "Room 412, bed 2; see page 604 and Table 16-34.",
        "Foley catheter in place; Parkinson's disease; Bell's palsy; Swan-Ganz; Jackson-Pratt drain.",
        "Will continue to monitor. Hope to wean. May resume diet. Vital signs stable.",
        "Seen in Cardiology Clinic; moved from Florida to Texas; strength 5/5; 1/2 tab; 2/3 of dose.",
        "Third cranial nerve intact; the 3rd time this week; the 4th ventricle is normal.",
    ],
)
def test_clinical_numbers_are_not_scrubbed(text):
    assert SCRUBBER.find(text) == []


KIND_EXAMPLES = {
    "dates": "seen 03/14/2021",
    "phones": "call 617-555-0123",
    "emails": "mail j.doe@example.org",
    "urls": "see https://example.org/x",
    "mrns": "MRN: 12345678",
    "ssns": "id 123-45-6789",
    "ages_over_89": "a 95-year-old",
    "titled_names": "Dr. Brannagh agreed",
    "locations": "lives in Framingham",
    "month_day_dates": "seen 9/14",
}
#: Switches that must go off together to leave their example alone (both find titled names).
ALSO_OFF = {"titled_names": {"untitled_names": False}}


@pytest.mark.parametrize("field", sorted(KIND_EXAMPLES))
def test_config_switches_each_kind_off(field):
    mixed = ". ".join(KIND_EXAMPLES.values())
    off = Scrubber(ScrubberConfig(**{field: False}, **ALSO_OFF.get(field, {})))
    assert off.scrub(KIND_EXAMPLES[field]).text == KIND_EXAMPLES[field]
    assert scrubbed(KIND_EXAMPLES[field]) != KIND_EXAMPLES[field]
    # The other kinds stay on: every example but this one is still scrubbed.
    result = off.scrub(mixed)
    assert KIND_EXAMPLES[field] in result.text
    assert sum(result.counts.values()) == len(KIND_EXAMPLES) - 1


def test_mrn_min_digits_applies_to_bare_numbers():
    text = "bare 123456 and 12345"
    assert scrubbed(text) == "bare [ID] and 12345"
    assert scrubbed(text, ScrubberConfig(mrn_min_digits=7)) == text
    assert scrubbed(text, ScrubberConfig(mrn_min_digits=5)) == "bare [ID] and [ID]"


def test_cued_id_min_digits():
    text = "MRN: 123 and MRN: 1234"
    assert scrubbed(text) == "MRN: 123 and MRN: [ID]"
    assert scrubbed(text, ScrubberConfig(cued_id_min_digits=3)) == "MRN: [ID] and MRN: [ID]"


def test_extra_patterns():
    patterns = ((r"\bSTUDY-\d{5}\b", "[ID]"), (r"\bBay State Clinic\b", "[HOSPITAL]"))
    config = ScrubberConfig(extra_patterns=patterns)
    result = Scrubber(config).scrub("Enrolled in STUDY-12345 at Bay State Clinic; STUDY-1 is not one.")
    assert result.text == "Enrolled in [ID] at [HOSPITAL]; STUDY-1 is not one."
    assert result.counts == {"[ID]": 1, "[HOSPITAL]": 1}
    assert [finding.kind for finding in result.findings] == ["extra", "extra"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"extra_patterns": (("x", "[SECRET]"),)}, "not a typed token"),
        ({"extra_patterns": (("(unclosed", "[ID]"),)}, "not a valid regular expression"),
        ({"extra_patterns": (("x",),)}, "pair of strings"),
        ({"dates": "yes"}, "dates must be true or false"),
        ({"mrn_min_digits": 2}, "mrn_min_digits must be an integer >= 3"),
        ({"cued_id_min_digits": 4.5}, "cued_id_min_digits must be an integer >= 3"),
        ({"extra_patterns": "[ID]"}, "extra_patterns must be a list"),
    ],
)
def test_invalid_config_is_rejected(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ScrubberConfig.from_dict(values)


def test_from_dict_rejects_unknown_keys_naming_them():
    with pytest.raises(ValueError, match="unknown ScrubberConfig keys: date, phone_numbers") as raised:
        ScrubberConfig.from_dict({"phone_numbers": False, "dates": True, "date": False})
    assert "dates" in str(raised.value)  # the known keys are listed to help fix the typo


def test_config_json_round_trip():
    config = ScrubberConfig(urls=False, mrn_min_digits=8, extra_patterns=((r"\bK\d{6}\b", "[ID]"),))
    assert ScrubberConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ScrubberConfig.from_dict({}) == ScrubberConfig()
    from_lists = ScrubberConfig(extra_patterns=[["x", "[ID]"]])  # as JSON gives them
    assert from_lists.extra_patterns == (("x", "[ID]"),)
    assert hash(from_lists) == hash(ScrubberConfig(extra_patterns=(("x", "[ID]"),)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.urls = True


def test_typed_tokens_are_never_scrubbed_again():
    text = " ".join(phi_tokens.PHI_TOKENS) + " Dr. [NAME] on [DATE]"
    everything = ScrubberConfig(extra_patterns=((r"DATE|NAME|ID|PHI|\[|\]", "[PHI]"),))
    assert Scrubber(everything).find(text) == []
    for note in make_phi_corpus(50, seed=3):
        once = scrubbed(note.text)
        assert scrubbed(once) == once


def test_overlapping_candidates_merge_into_one_finding():
    # The extra pattern overlaps the end of the date: neither part may survive.
    config = ScrubberConfig(extra_patterns=((r"2021 in Ward \d", "[HOSPITAL]"),))
    text = "on 03/14/2021 in Ward 7 today"
    assert Scrubber(config).find(text) == [Finding(3, 23, "extra", "[HOSPITAL]")]
    assert Scrubber(config).scrub(text).text == "on [HOSPITAL] today"


def test_findings_are_sorted_and_disjoint():
    for note in make_phi_corpus(100, seed=4):
        findings = SCRUBBER.find(note.text)
        assert all(a.end <= b.start for a, b in itertools.pairwise(findings))
        assert all(finding.start < finding.end for finding in findings)


@pytest.mark.parametrize("seed", [11, 12])
def test_recall_and_precision_on_the_synthetic_corpus(seed):
    result = score(make_phi_corpus(500, seed=seed), SCRUBBER.find)
    assert set(result.planted) == set(PHI_KINDS)
    for kind in PHI_KINDS:
        assert result.planted[kind] >= 100, kind
        # Measured 0.98 for names (lower-case or unlisted names with weak context), 1.0 elsewhere.
        assert result.recall(kind) >= (0.97 if kind == "name" else 0.99), (kind, result.recall(kind))
    # Measured 0.995: the misses are scores such as "3/6" written with no context, taken for dates.
    assert result.precision() >= 0.99
    assert set(result.distractors_hit) <= {"clinical score"}


def mtsamples_notes(limit=None):
    with SAMPLE.open(newline="", encoding="utf-8") as handle:
        notes = {row["sample_id"]: row["transcription"] for row in csv.DictReader(handle)}
    return [normalize_text(note) for note in list(notes.values())[:limit]]


CANARY_SENTENCES = (
    "Reach the family at {phone}.",
    "Registered under MRN: {mrn}.",
    "SSN {ssn} on file.",
    "Send results to {email} please.",
    "Portal: https://portal.example.com/u/{mrn}",
)


def test_canary_identifiers_do_not_survive_in_real_notes():
    rng = random.Random(2024)
    for number, note in enumerate(mtsamples_notes(limit=80)):
        values = {
            "phone": f"({rng.choice(['617', '919', '303'])}) 555-01{rng.randint(10, 99)}",
            "mrn": f"{rng.randint(10_000_000, 99_999_999)}",
            "ssn": f"{rng.randint(900, 999)}-{rng.randint(10, 49)}-{rng.randint(1000, 9999)}",
            "email": f"canary{number}.{rng.randint(100, 999)}@example.net",
        }
        paragraphs = note.split("\n\n")
        for sentence in CANARY_SENTENCES:
            paragraphs.insert(rng.randint(0, len(paragraphs)), sentence.format(**values))
        output = scrubbed("\n\n".join(paragraphs))
        without_separators = re.sub(r"[\s().+-]", "", output)
        for value in values.values():
            assert value not in output, f"note {number}: a planted identifier survived"
            digits = re.sub(r"\D", "", value)
            if len(digits) >= 7:
                assert digits not in without_separators, f"note {number}: planted digits survived"


def test_real_notes_keep_their_clinical_numbers():
    """MTSamples is de-identified: number-shaped identifiers found there would be false positives."""
    dose = re.compile(r"\b\d+(?:\.\d+)? ?(?:mg|mcg|mL|units)\b")
    for note in mtsamples_notes():
        result = SCRUBBER.scrub(note)
        assert not {finding.kind for finding in result.findings} & {"phone", "email", "url", "mrn", "ssn"}
        assert dose.findall(result.text) == dose.findall(note)


def test_scrubbing_logs_and_prints_nothing(caplog, capsys):
    caplog.set_level(logging.DEBUG)
    SCRUBBER.scrub("MRN: 55512345 seen 01/02/2003 by Dr. Brannagh, call 617-555-0142.")
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")
