"""Synthetic clinical notes with planted identifiers, for measuring the PHI scrubber.

`make_phi_corpus(n, seed)` writes notes from clinical-style template sentences, fills their slots with
identifiers in the formats real notes use, and records where each one is (the gold spans), together
with clinical numbers that must survive scrubbing (the distractors). `score` turns a scrubber's
findings into span-level recall and precision. Every identifier is invented: 555-01xx telephone
numbers, example.org/.com/.net addresses, never-issued SSNs, made-up names and record numbers.

The shapes follow what real notes hold and a rule set misses, written here by hand rather than taken
from the scrubber's rules or word lists: names without a title or in lower case (clinicians, patients,
relatives), lower-case titles, month/day dates without a year, ordinal days, month and holiday words,
street addresses, towns and zip codes, hospitals and care facilities, and telephone numbers after a
dash, split by a dash and a space or a slash, and short pager or extension numbers. Clinical words
that are also names or places ("Foley", "Parkinson's", "Will", "Hope") are distractors.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol

#: Kinds of planted identifiers.
PHI_KINDS = ("date", "phone", "email", "url", "mrn", "ssn", "age", "name", "location", "hospital")


class Span(NamedTuple):
    """Characters [start, end) of a note, and what they are."""

    start: int
    end: int
    kind: str


@dataclasses.dataclass(frozen=True)
class SyntheticNote:
    """A note, the identifiers planted in it, and the clinical numbers that must stay."""

    text: str
    phi: tuple[Span, ...]
    distractors: tuple[Span, ...]


# A slot's value: (text before, the span, text after); only the middle part is recorded.
Value = tuple[str, str, str]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fmt: skip
_FIRST = ("avery", "jordan", "rowan", "casey", "devon", "marlo", "quinn", "tamsin", "ellis", "noor")
_LAST = ("Quillfeather", "Okonkwo-Vale", "Brannagh", "Lindqvist", "Delacroix", "Marchetti", "Osei",
         "Haverford", "Tremaine", "Vukovic", "O'Rourke", "Nakashima", "Abernathy", "Castellanos")  # fmt: skip
_DOMAINS = ("example.org", "example.com", "example.net", "mail.example.org", "clinic.example.com")
_AREA_CODES = ("617", "508", "212", "415", "312", "202", "303", "206", "713", "919")


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def _date(rng: random.Random) -> Value:
    day = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(29_000))
    y, m, d = day.year, day.month, day.day
    month = _MONTHS[m - 1]
    short = "Sept" if m == 9 and rng.random() < 0.5 else month[:3]
    suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}.get(d, "th")
    forms = (
        f"{m:02d}/{d:02d}/{y}",
        f"{m}/{d}/{y % 100:02d}",
        f"{y}-{m:02d}-{d:02d}",
        f"{month} {d}, {y}",
        f"{d} {short} {y}",
        f"{short} {d}",
        f"{d:02d}-{short.upper()}-{y}",
        f"{month} {y}",
        f"{short}. {d}, {y}",
        f"{month} {d}{suffix}",
        f"{m}-{d}-{y}",
        f"{d:02d}.{m:02d}.{y}",
        f"{m}/{y}",
    )
    return "", rng.choice(forms), ""


def _phone_number(rng: random.Random) -> str:
    area, line = rng.choice(_AREA_CODES), f"01{_digits(rng, 2)}"
    forms = (
        f"({area}) 555-{line}",
        f"{area}-555-{line}",
        f"{area}.555.{line}",
        f"+1 {area} 555 {line}",
        f"{area} 555 {line}",
        f"1-{area}-555-{line}",
        f"+1 ({area}) 555-{line}",
        f"{area}-555-{line} ext. {rng.randint(1, 999)}",
        f"({area}) 555-{line} x{rng.randint(100, 9999)}",
    )
    return rng.choice(forms)


def _phone(rng: random.Random) -> Value:
    return "", _phone_number(rng), ""


def _fax(rng: random.Random) -> Value:
    cue = rng.choice(("fax: ", "Fax ", "fax number ", "FAX: "))
    return cue, _phone_number(rng), ""


def _pager(rng: random.Random) -> Value:
    return rng.choice(("pager ", "pager #", "beeper ")), _digits(rng, rng.choice((5, 7))), ""


def _email(rng: random.Random) -> Value:
    first, last = rng.choice(_FIRST), rng.choice(_LAST).lower().replace("'", "")
    local = rng.choice((f"{first}.{last}", f"{first[0]}{last}{rng.randint(1, 99)}", f"{first}_{last}",
                        "clinic.scheduling", f"dr.{last}"))  # fmt: skip
    return "", f"{local}@{rng.choice(_DOMAINS)}", ""


def _url(rng: random.Random) -> Value:
    domain, number = rng.choice(_DOMAINS), rng.randint(100, 99999)
    forms = (
        f"https://www.{domain}/patients/{number}",
        f"http://{domain}/portal?id={number}",
        f"www.{domain}/records/{number}",
        f"{domain}/clinic/notes",
        f"https://portal.{domain}/",
        f"portal.{domain}",
    )
    return "", rng.choice(forms), ""


def _mrn(rng: random.Random) -> Value:
    number = _digits(rng, rng.randint(6, 9))
    cue = rng.choice(("MRN: ", "MRN ", "MR# ", "MR #", "medical record number ", "Medical Record #: ",
                      "MRN:", "Unit No. ", "acct # ", "chart number "))  # fmt: skip
    if rng.random() < 0.2:
        number = "00" + number[2:]
    return cue, number, ""


def _ssn(rng: random.Random) -> Value:
    # Area 900-999 with group 00-49 is issued neither as an SSN nor as an ITIN.
    area, group, serial = rng.randint(900, 999), f"{rng.randint(0, 49):02d}", _digits(rng, 4)
    cue = rng.choice(("", "", "SSN: ", "SSN ", "social security number "))
    separator = rng.choice((" ", "")) if cue and rng.random() < 0.3 else "-"
    return cue, f"{area}{separator}{group}{separator}{serial}", ""


def _old_age(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(("ninety", "ninety-one", "ninety-four", "ninety-seven"))
    return str(rng.randint(90, 109))


def _age_adjective(rng: random.Random) -> Value:
    after = rng.choice(("-year-old", " year old", " yo", " y/o", "-yo", " years old", "-year old"))
    return "", _old_age(rng), after


def _age_cued(rng: random.Random) -> Value:
    before, after = rng.choice((("age ", ""), ("aged ", ""), ("Age: ", ""), ("", " years of age")))
    return before, _old_age(rng), after


def _doctor(rng: random.Random) -> Value:
    title = rng.choice(("Dr. ", "Dr. ", "Dr ", "Mrs. ", "Mr. ", "Ms. "))
    last = rng.choice(_LAST)
    forms = (last, f"{rng.choice(_FIRST).title()} {last}", f"{rng.choice(string.ascii_uppercase)}. {last}")
    return title, rng.choice(forms), ""


# Given names and surnames typed here from everyday use, not from the scrubber's lists; some are also
# words ("Hope", "Rose", "Bell") and some are rare or invented ("Quillfeather").
_GIVEN = ("Mary", "Kathy", "James", "Linda", "Robert", "Susan", "Michael", "Donna", "Thomas", "Karen",
          "Joseph", "Nancy", "Brian", "Deborah", "Kevin", "Sharon", "Gary", "Cynthia", "Eric", "Angela",
          "Rose", "Hope", "Jim", "Peggy", "Theresa", "Dmitri", "Aisha", "Priya", "Tamsin",
          "Marlo")  # fmt: skip
_FAMILY = ("Sullivan", "Kowalski", "Nguyen", "Patel", "Garcia", "O'Brien", "Fitzgerald", "Delgado",
           "Hernandez", "Petrov", "Andersen", "Whitaker", "Lindqvist", "Brannagh", "Quillfeather",
           "Okonkwo", "McCarthy", "Rosenberg", "Bell", "Walsh", "Goldstein", "Ramirez")  # fmt: skip
_TOWNS = ("Framingham", "Worcester", "Quincy", "Springfield", "Lowell", "Brockton", "Peabody", "Nashua",
          "Dedham", "Methuen", "Fall River", "New Bedford", "Marlborough", "Chicopee",
          "Haverhill")  # fmt: skip
_STREETS = ("Elm", "Maple", "Washington", "Pleasant", "Highland", "Chestnut", "Prospect", "Summer",
            "Oak Hill", "Centre")  # fmt: skip
_STREET_TYPES = ("St", "St.", "Street", "Ave", "Avenue", "Rd", "Road", "Drive", "Lane", "Terrace")
_FACILITY_NAMES = ("Mercy", "Lakeside", "Riverside", "North Shore", "Saint Anne's", "Good Samaritan",
                   "Fairview", "Holy Family", "Baystate", "Cape Cod", "Brookline", "Milford")  # fmt: skip
_FACILITY_TYPES = ("Hospital", "Medical Center", "General Hospital", "Rehab", "Nursing Home", "Hospice",
                   "Rehabilitation Center")  # fmt: skip
_HOLIDAYS = ("Christmas", "Thanksgiving", "Easter", "New Year's", "Labor Day", "Memorial Day",
             "Halloween")  # fmt: skip


def _any_case(rng: random.Random, value: str) -> str:
    return rng.choices((value, value.lower(), value.upper()), weights=(6, 3, 1))[0]


def _clinician(rng: random.Random) -> Value:
    first, last = rng.choice(_GIVEN), rng.choice(_FAMILY)
    title = rng.choice(("dr ", "dr. ", "Dr ", "DR. ", "", "", "", ""))
    name = rng.choice((last, f"{first} {last}", f"{first[0]}. {last}")) if title else f"{first} {last}"
    return title, _any_case(rng, name) if title else name, ""


def _signature(rng: random.Random) -> Value:
    credential = rng.choice((", RN", " RN", ", MD", " NP", ", PA-C", " MD"))
    return "", f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}", credential


def _relative(rng: random.Random) -> Value:
    relation = rng.choice(("wife ", "husband ", "son ", "daughter ", "HCP ", "sister ", "niece ", "friend "))
    name = rng.choice((rng.choice(_GIVEN), f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}"))
    return _any_case(rng, relation), _any_case(rng, name) if rng.random() < 0.3 else name, ""


def _patient(rng: random.Random) -> Value:
    title = rng.choice(("", "Mr. ", "Ms. ", "mrs "))
    name = rng.choice(_FAMILY) if title else f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}"
    return title, name.lower() if title == "mrs " else name, ""


def _short_date(rng: random.Random) -> Value:
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd"}.get(day, "th")
    before, value = rng.choice((
        ("", f"{month}/{day}"), ("", f"{month:02d}/{day:02d}"), ("the ", f"{day}{suffix}"),
        ("", _MONTHS[month - 1]), ("", rng.choice(_HOLIDAYS)), ("", f"{month}/{day}"),
        ("the ", "Fourth of July"),
    ))  # fmt: skip
    return before, value, ""


def _street(rng: random.Random) -> Value:
    number = rng.choice((str(rng.randint(1, 999)), str(rng.randint(1000, 99999))))
    street = f"{number} {rng.choice(_STREETS)} {rng.choice(_STREET_TYPES)}"
    return "", street + rng.choice(("", "", ", Apt 4", " #12")), ""


def _town(rng: random.Random) -> Value:
    return "", rng.choice(_TOWNS), ""


def _zip(rng: random.Random) -> Value:
    # 01xxx-02xxx: Massachusetts zip codes, written after the state as addresses have them.
    return "MA ", f"0{rng.randint(1000, 2799)}", ""


def _facility(rng: random.Random) -> Value:
    if rng.random() < 0.2:
        return "", f"St. {rng.choice(('Elizabeth', 'Vincent', 'Luke', 'Margaret'))}'s", ""
    return "", f"{rng.choice(_FACILITY_NAMES)} {rng.choice(_FACILITY_TYPES)}", ""


def _phone_variant(rng: random.Random) -> Value:
    area, line = rng.choice(_AREA_CODES), f"01{_digits(rng, 2)}"
    before, value = rng.choice((
        ("home-", f"{area}-555-{line}"), ("cell -", f"{area}-555-{line}"), ("", f"{area}-555- {line}"),
        ("", f"{area}/555-{line}"), ("", f"555-{line}"), ("pager ", f"{rng.randint(1, 9)}-{_digits(rng, 4)}"),
        ("ext ", _digits(rng, rng.choice((3, 4, 5)))), ("beeper #", _digits(rng, 3)), ("", f"555- {line}"),
    ))  # fmt: skip
    return before, value, ""


def _pick(*values: str) -> Callable[[random.Random], Value]:
    return lambda rng: ("", rng.choice(values), "")


def _year(rng: random.Random) -> Value:
    return "", str(rng.randint(1980, 2024)), ""


_DOSES = ("2.5 mg", "81 mg", "500 mg", "0.125 mg", "40 units", "1 g", "325 mg", "10 mEq", "100000 units",
          "4 mg/kg", "0.4 mg")  # fmt: skip
_LABS = ("Na 138", "K 4.2", "Hgb 13.5", "WBC 7.8", "creatinine 1.1", "platelets 250000/uL", "HbA1c 7.2%",
         "INR 1.1", "glucose 142 mg/dL", "LDL 130", "TSH 2.35", "viral load 120000 copies/mL",
         "pH 7.35", "CD4 count 350", "EF 55-60%")  # fmt: skip
_SCORES = ("5/5", "3/6", "20/20", "8/9", "2+", "1:1000", "G2P1", "T2N0M0", "0.9%", "24-hour", "GCS 15",
           "12-lead", "grade 2/4")  # fmt: skip

# Slot name -> (kind, value). Kinds in PHI_KINDS are planted identifiers; the rest are distractors.
_SLOTS: dict[str, tuple[str, Callable[[random.Random], Value]]] = {
    "date": ("date", _date),
    "phone": ("phone", _phone),
    "fax": ("phone", _fax),
    "pager": ("phone", _pager),
    "email": ("email", _email),
    "url": ("url", _url),
    "mrn": ("mrn", _mrn),
    "ssn": ("ssn", _ssn),
    "age_adj": ("age", _age_adjective),
    "age_cue": ("age", _age_cued),
    "doctor": ("name", _doctor),
    "clinician": ("name", _clinician),
    "signature": ("name", _signature),
    "relative": ("name", _relative),
    "patient": ("name", _patient),
    "short_date": ("date", _short_date),
    "street": ("location", _street),
    "town": ("location", _town),
    "zip": ("location", _zip),
    "facility": ("hospital", _facility),
    "phone_variant": ("phone", _phone_variant),
    "eponym": (
        "clinical word",
        _pick(
            "Foley catheter",
            "Parkinson's disease",
            "Bell's palsy",
            "Graves' disease",
            "Swan-Ganz catheter",
            "Jackson-Pratt drain",
            "Homans' sign",
            "Crohn's disease",
            "Wilson disease",
        ),
    ),
    "word": (
        "clinical word",
        _pick(
            "Will",
            "Hope",
            "May",
            "Rose",
            "Mobile",
            "Normal",
            "Florida",
            "Cardiology Clinic",
            "the 3rd time",
            "the 4th ventricle",
            "2/3 of",
            "5/5 strength",
            "1/2 tab",
            "Walker",
            "Grant",
        ),
    ),
    "dose": ("dose", _pick(*_DOSES)),
    "bp": ("bp", _pick("120/80", "135/85", "98/60", "142/91", "110/70")),
    "lab": ("lab", _pick(*_LABS)),
    "freq": ("frequency", _pick("q.4h.", "q.i.d.", "b.i.d.", "q6h", "t.i.d.", "q.h.s.")),
    "level": ("vertebral level", _pick("L4-5", "C5-6", "T12-L1", "L5-S1", "C6-7")),
    "code": ("code", _pick("E11.9", "I10", "CPT 99213", "J45.909", "DRG 291", "Z79.4")),
    "year": ("year", _year),
    "young_age": ("young age", _pick("72-year-old", "89-year-old", "45-year-old", "89 yo", "63 y/o")),
    "young_age_cue": ("young age", _pick("age 45", "aged 89", "age 72", "age 18")),
    "time": ("time", _pick("10:30", "14:45", "08:15", "23:05")),
    "fraction": ("fraction", _pick("1/2", "3/4", "1/3", "2/3")),
    "range": ("range", _pick("3-4 days", "2-3 times", "10-12 weeks", "1-2 tablets", "5-10 minutes")),
    "measure": ("measurement", _pick("5 ft 10 in", "5'10\"", "70 kg", "165 lb", "BMI 27.4", "172 cm")),
    "vital": ("vital sign", _pick("HR 92", "SpO2 95%", "T 98.6", "RR 18", "heart rate 104", "pulse 96")),
    "score": ("clinical score", _pick(*_SCORES)),
}

_TEMPLATES = (
    "The patient is a {age_adj} woman seen on {date} for worsening dyspnea.",
    "This {age_adj} man with a history of CHF presents after a fall on {date}.",
    "Now {age_cue}, she lives alone and manages her own medications.",
    "He is {age_cue} and was last hospitalized on {date}.",
    "A {young_age} male with hypertension was seen in clinic on {date}.",
    "Her daughter can be reached at {phone} with questions.",
    "Please call the cardiology office at {phone} to schedule the echo.",
    "Records were sent by {fax} on {date}.",
    "The covering resident can be paged at {pager} overnight.",
    "Family contact: {phone} (home) or {phone} (cell).",
    "Questions may be sent to {email} or to the portal at {url}.",
    "Patient education materials are available at {url}.",
    "Discharge summary was e-mailed to {email} on {date}.",
    "Identifiers verified at registration: {mrn}, {ssn}.",
    "Labs were drawn under {mrn} on {date}.",
    "Insurance verification required the patient's {ssn} and {mrn}.",
    "She was referred by {doctor} for evaluation of anemia.",
    "Case discussed with {doctor}, who agrees with the plan.",
    "Follow up with {doctor} in {range}.",
    "Started aspirin {dose} daily and metoprolol {dose} {freq}.",
    "Blood pressure {bp}, {vital}, {vital}, weight {measure}.",
    "Admission labs: {lab}, {lab}, {lab}.",
    "MRI shows disc herniation at {level} with mild foraminal narrowing.",
    "Diagnosed with diabetes mellitus in {year}, on insulin since {year}.",
    "Billing codes {code} and {code} were entered.",
    "Take {fraction} tablet of lorazepam {freq} as needed; dose given at {time}.",
    "Symptoms have been present for {range} and worsen in the evening.",
    "Vital signs: {vital}, {bp}. Height {measure}.",
    "He reports taking {dose} of acetaminophen at {time} with little relief.",
    "Her mother developed breast cancer at {young_age_cue} and her sister at {young_age_cue}.",
    "Colonoscopy in {year} was normal; repeat planned in {range}.",
    "Next appointment {date} at {time} with {doctor}.",
    "The {young_age} patient denies chest pain, fever or chills.",
    "Lumbar fusion at {level} in {year}; chronic back pain since.",
    "Potassium repleted with {dose}; repeat {lab} at {time}.",
    "Strength {score} in all extremities; a {score} systolic murmur; {score} pulses.",
    "History notable for {score}; staged as {score} in {year}.",
)
_TEMPLATES += (
    "Seen by {clinician} this morning; plan discussed with {clinician}.",
    "{relative} called at {time} and was updated by {signature}.",
    "{patient} was resting comfortably; {relative} at bedside.",
    "Note written by {signature}.",
    "Spoke with {clinician} re: the {eponym}; {word} continue to monitor.",
    "Pt returned from CT on {short_date}; next dose due {short_date}.",
    "Family plans to visit over {short_date}; last BM {short_date}.",
    "Pt lives at {street}, {town}, {zip}, with {relative}.",
    "Lives alone in {town}; daughter lives in {town}.",
    "Transferred from {facility} on {short_date} for further care.",
    "Plan d/c to {facility} when bed available; {word} be reassessed.",
    "Contact {relative} {phone_variant} or {phone_variant}.",
    "Call {phone_variant} with results; {eponym} placed.",
    "History of {eponym}; {word} was noted.",
)
_FILLER = (
    "No acute distress.",
    "Lungs are clear to auscultation bilaterally.",
    "Abdomen soft, nontender, nondistended.",
    "She denies nausea, vomiting or diarrhea.",
    "Continue current medications and return if symptoms worsen.",
    "The risks and benefits of the procedure were discussed.",
)
_HEADERS = ("HISTORY OF PRESENT ILLNESS:", "ASSESSMENT AND PLAN:", "SOCIAL HISTORY:", "MEDICATIONS:",
            "PHYSICAL EXAMINATION:", "CONTACT INFORMATION:")  # fmt: skip
_FORMATTER = string.Formatter()


def _note(rng: random.Random) -> SyntheticNote:
    """One note of 2-4 paragraphs, each an optional header and 2-4 sentences."""
    pieces: list[str] = []
    phi: list[Span] = []
    distractors: list[Span] = []
    length = 0

    def add(text: str, kind: str | None = None) -> None:
        nonlocal length
        if kind is not None:
            spans = phi if kind in PHI_KINDS else distractors
            spans.append(Span(length, length + len(text), kind))
        pieces.append(text)
        length += len(text)

    for paragraph in range(rng.randint(2, 4)):
        if paragraph:
            add("\n\n")
        if rng.random() < 0.6:
            add(rng.choice(_HEADERS) + rng.choice(("\n", " ")))
        for sentence in range(rng.randint(2, 4)):
            if sentence:
                add(" ")
            if rng.random() < 0.2:
                add(rng.choice(_FILLER))
                continue
            for literal, slot, _, _ in _FORMATTER.parse(rng.choice(_TEMPLATES)):
                add(literal)
                if slot is not None:
                    kind, make = _SLOTS[slot]
                    before, value, after = make(rng)
                    add(before)
                    add(value, kind)
                    add(after)
    return SyntheticNote("".join(pieces), tuple(phi), tuple(distractors))


def make_phi_corpus(n: int, seed: int) -> list[SyntheticNote]:
    """`n` synthetic notes; the same (n, seed) always gives the same notes."""
    rng = random.Random(seed)
    return [_note(rng) for _ in range(n)]


class _Found(Protocol):
    start: int
    end: int
    kind: str


@dataclasses.dataclass(frozen=True)
class Score:
    """Span-level results of a scrubber on a synthetic corpus.

    A planted identifier counts as found when one finding (of any kind) covers all of it. A finding is
    correct when it overlaps a planted identifier; precision is correct findings over all findings.
    """

    planted: dict[str, int]
    found: dict[str, int]
    findings: dict[str, int]
    correct_findings: dict[str, int]
    #: Distractors (clinical numbers) that a finding touched; each one is a precision error.
    distractors_hit: dict[str, int]

    def recall(self, kind: str) -> float:
        """Share of the planted identifiers of `kind` that were found (NaN when none were planted)."""
        planted = self.planted.get(kind, 0)
        return self.found.get(kind, 0) / planted if planted else float("nan")

    def precision(self, kind: str | None = None) -> float:
        """Precision of the findings of one kind, or of all findings when `kind` is None."""
        if kind is None:
            total, correct = sum(self.findings.values()), sum(self.correct_findings.values())
        else:
            total, correct = self.findings.get(kind, 0), self.correct_findings.get(kind, 0)
        return correct / total if total else 1.0


def _overlaps(a: _Found | Span, b: _Found | Span) -> bool:
    return a.start < b.end and b.start < a.end


def score(notes: Iterable[SyntheticNote], find: Callable[[str], Sequence[_Found]]) -> Score:
    """Run `find` (e.g. `Scrubber().find`) on every note and compare with the gold spans."""
    planted, found, findings, correct, hit = Counter(), Counter(), Counter(), Counter(), Counter()
    for note in notes:
        results = find(note.text)
        for span in note.phi:
            planted[span.kind] += 1
            if any(f.start <= span.start and span.end <= f.end for f in results):
                found[span.kind] += 1
        for result in results:
            findings[result.kind] += 1
            if any(_overlaps(result, span) for span in note.phi):
                correct[result.kind] += 1
        for span in note.distractors:
            if any(_overlaps(result, span) for result in results):
                hit[span.kind] += 1
    return Score(dict(planted), dict(found), dict(findings), dict(correct), dict(hit))
