"""Locations smaller than a state: street addresses, cities and towns, zip codes, hospitals and other
care facilities.

- Streets: a house number, one to three capitalised words and a street type (`12 Elm St.`, `4 North
  Maple Avenue, Apt 3`), or capitalised words before a spelled-out street type (`on Elm Street`);
  `P.O. Box 123`.
- Zip codes: five digits (and `-1234`) after a state abbreviation or name, or after `zip`.
- Places: runs of up to four words that name a US place of 1,000 inhabitants or more, or a large world
  city (GeoNames, see `lexicon`); capitalised and not an ordinary word, or any case after a cue such
  as `lives in` or `from`; and capitalised words before `, MA` and other state abbreviations. State
  and country names are kept, as Safe Harbor allows.
- Facilities: capitalised words before a facility word (`Hospital`, `Medical Center`, `Rehab`,
  `Nursing Home`, ...) unless every one is an ordinary word (`Cardiology Clinic` stays), and
  `St./Saint X's` after a cue such as `transferred to`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from components.clinical_text.lexicon import STOP_WORDS, Lexicon
from components.clinical_text.name_finder import EPONYM_AFTER, Token, tokens

STATE_ABBREVIATIONS = [
    "AL",
    "AK",
    "AZ",
    "AR",
    "CA",
    "CO",
    "CT",
    "DE",
    "DC",
    "FL",
    "GA",
    "HI",
    "ID",
    "IL",
    "IN",
    "IA",
    "KS",
    "KY",
    "LA",
    "ME",
    "MD",
    "MA",
    "MI",
    "MN",
    "MS",
    "MO",
    "MT",
    "NE",
    "NV",
    "NH",
    "NJ",
    "NM",
    "NY",
    "NC",
    "ND",
    "OH",
    "OK",
    "OR",
    "PA",
    "RI",
    "SC",
    "SD",
    "TN",
    "TX",
    "UT",
    "VT",
    "VA",
    "WA",
    "WV",
    "WI",
    "WY",
]
_STATES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|"
    "Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|"
    "Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|"
    "North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|South Carolina|"
    "South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|Wisconsin|Wyoming"
)
_STATE_CODE = "(?:" + "|".join(STATE_ABBREVIATIONS) + r")\b"
_CAP = r"[A-Z][A-Za-z'’.-]*"
_STREET_TYPES = (
    r"(?i:street|st|avenue|ave|road|rd|boulevard|blvd|drive|dr|lane|ln|way|court|ct|place|pl|terrace|"
    r"ter|circle|cir|highway|hwy|parkway|pkwy|square|sq|route|rte|turnpike|tpke|pike|row|path|trail)\b\.?"
)
_SPELLED_STREET_TYPES = "Street|Avenue|Road|Boulevard|Lane|Drive|Terrace|Parkway|Highway|Turnpike"
_UNIT = r"(?:,?[ ](?i:apt|apartment|unit|suite|ste|\#)\.?[ ]?\#?[ ]?\w{1,5})?"
_STREET_RULES = (
    rf"(?<![\w/.-])\d{{1,6}}[A-Za-z]?[ ](?:[NSEW]\.?[ ])?(?:{_CAP}[ ]){{1,3}}{_STREET_TYPES}{_UNIT}",
    rf"\b(?:{_CAP}[ ]){{1,2}}(?:{_SPELLED_STREET_TYPES})\b{_UNIT}",
    r"\b(?i:p\.?[ ]?o\.?[ ]box)[ ]\d{1,6}\b",
)
_ZIP_RULES = (
    rf"(?:{_STATE_CODE}|\b(?:{_STATES}))[ ,]{{1,2}}(?P<phi>\d{{5}}(?:-\d{{4}})?)(?![\w-])",
    r"(?i:\bzip(?:[ ]?code)?[ ]?[:#]?[ ]?)(?P<phi>\d{5}(?:-\d{4})?)(?![\w-])",
)
_CITY_BEFORE_STATE = rf"(?P<phi>(?:{_CAP}[ ]){{0,2}}{_CAP}),[ ]?(?:{_STATE_CODE}|(?:{_STATES})\b)"
_FACILITY_WORDS = (
    r"Hospital|Medical[ ]Center|Med[ ]Ctr|Medical[ ]Ctr|Health[ ]Center|Health[ ]System|Healthcare|"
    r"Clinic|Infirmary|Rehab(?:ilitation)?(?:[ ](?:Center|Hospital|Facility))?|Nursing[ ](?:Home|Center|"
    r"Facility)|Care[ ]Center|Senior[ ]Living|Assisted[ ]Living|Manor|Hospice|Sanatorium|Institute"
)
_FACILITY_RULE = rf"\b(?P<words>(?:{_CAP}[ ]|&[ ]|of[ ]|the[ ]){{1,5}})(?:{_FACILITY_WORDS})(?![A-Za-z])"
_SAINT_RULE = (
    r"(?i:\b(?:to|from|at|transferred|admitted|transfer|xfer|sent|d/c|discharged|readmitted)[ ]+(?:the[ ]+)?)"
    r"(?P<phi>(?:St\.?|Saint)[ ]?[A-Z][a-z]+(?:['’]s)?)"
)
#: Words that name a service, not a facility: "Cardiology Clinic", "Pain Clinic", "Dialysis Center".
_DEPARTMENT_WORDS = frozenset(
    [
        "of",
        "the",
        "and",
        "&",
        "pain",
        "wound",
        "urgent",
        "care",
        "walk-in",
        "walk",
        "in",
        "family",
        "primary",
        "outpatient",
        "inpatient",
        "dialysis",
        "heart",
        "cancer",
        "eye",
        "vascular",
        "surgical",
        "surgery",
        "medical",
        "medicine",
        "internal",
        "general",
        "sleep",
        "spine",
        "breast",
        "diabetes",
        "memory",
        "vein",
        "hand",
        "foot",
        "infusion",
        "imaging",
        "radiation",
        "transplant",
        "stroke",
        "trauma",
        "burn",
        "pulmonary",
        "kidney",
        "liver",
        "headache",
        "allergy",
        "travel",
        "fertility",
        "research",
        "student",
        "employee",
        "health",
        "anticoagulation",
        "coumadin",
        "lipid",
        "rehab",
        "physical",
        "occupational",
        "speech",
        "therapy",
        "behavioral",
        "mental",
        "methadone",
    ]
)
_SPECIALTY = re.compile(r"(?:ology|iatry|iatrics?|ologic|ics)$")
#: Words before a place name that make even a lower-case or ordinary one a place.
PLACE_CUES = frozenset(
    ["in", "from", "to", "near", "lives", "live", "living", "resides", "resident", "moved", "visiting"]
)


class PlaceFinder:
    """Finds location and facility spans; `find` yields (start, end, kind) with kind location/hospital."""

    def __init__(self, lexicon: Lexicon) -> None:
        self._places = lexicon.places
        self._common = lexicon.common
        self._longest = min(lexicon.place_words, 4)
        self._rules = [re.compile(rule) for rule in (*_STREET_RULES, *_ZIP_RULES, _CITY_BEFORE_STATE)]
        self._facility = re.compile(_FACILITY_RULE)
        self._saint = re.compile(_SAINT_RULE)

    def find(self, text: str, words: list[Token] | None = None) -> Iterator[tuple[int, int, str]]:
        for rule in self._rules:
            group = "phi" if "phi" in rule.groupindex else 0
            for match in rule.finditer(text):
                yield (*match.span(group), "location")
        for match in self._facility.finditer(text):
            named = [w.lower() for w in re.findall(r"[A-Za-z'’]+", match.group("words"))]
            if any(
                w not in self._common and w not in _DEPARTMENT_WORDS and not _SPECIALTY.search(w)
                for w in named
            ):
                yield (match.start(), match.end(), "hospital")
        for match in self._saint.finditer(text):
            yield (*match.span("phi"), "hospital")
        yield from self._gazetteer(text, tokens(text) if words is None else words)

    def _gazetteer(self, text: str, words: list[Token]) -> Iterator[tuple[int, int, str]]:
        index, count = 0, len(words)
        while index < count:
            found = 0
            for size in range(min(self._longest, count - index), 0, -1):
                run = words[index : index + size]
                if any(text[a[1] : b[0]] != " " for a, b in itertools.pairwise(run)):
                    continue
                key = " ".join(word[3] for word in run)
                if (
                    key in self._places
                    and self._accept(text, words, index, run)
                    and EPONYM_AFTER.match(text, run[-1][1]) is None
                ):
                    found = size
                    break
            if found:
                yield words[index][0], words[index + found - 1][1], "location"
                index += found
            else:
                index += 1

    def _accept(self, text: str, words: list[Token], index: int, run: list[Token]) -> bool:
        capitalised = all(word[2][0].isupper() for word in run)
        ordinary = len(run) == 1 and run[0][3] in self._common
        if run[0][3] in STOP_WORDS:
            return False
        if capitalised and not ordinary:
            return True
        cued = (
            index > 0 and words[index - 1][3] in PLACE_CUES and text[words[index - 1][1] : run[0][0]] == " "
        )
        return cued and not ordinary
