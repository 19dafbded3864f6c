"""A rule-based scrubber for identifiers left in clinical notes after de-identification.

The corpora this project reads are already de-identified (MIMIC's `[**...**]` placeholders, MTSamples'
"Dr. X"), but de-identification misses things, and notes from new sources may carry identifiers with a
regular shape. This scrubber is the second line: it replaces what regular expressions can find reliably
with the typed tokens of `phi_tokens`. It is not a de-identification system: it cannot find a patient's
name in running text, a street address, a rare disease or any identifier without a recognisable shape,
and it must not be the only protection for raw notes.

Rules are regular expressions rather than a model so that they are fast (a tokenizer corpus is millions
of notes), need no training data with real PHI, behave the same everywhere, and can be read and audited.
What they cover (each switchable in `ScrubberConfig`):

- dates with a day or a month beside a year: `03/14/2021`, `3/14/21`, `2021-03-14`, `March 14, 2021`,
  `14 Mar 2021`, `14-MAR-2021`, `Mar 14`, `March 2021`, `3/2021`, and both ends of `3/14/2021-3/20/2021`.
  A year alone (`in 2010`) stays, as HIPAA Safe Harbor allows; so do a month alone, times, and fractions
  or ratios such as `1/2` or `120/80` (a numeric day/month pair without a year is too often one of them).
- phone and fax numbers in North American forms (`(617) 555-0123`, `617.555.0123`, `+1 617 555 0123`,
  with extensions), `+`-prefixed international numbers, and numbers after a cue such as `pager`.
- e-mail addresses; URLs with a scheme, starting `www.`, or bare domains with a common top-level domain.
- record numbers: digits (optionally a short letter prefix) after a cue such as `MRN:`, `MR#` or
  `medical record number`, and any bare number of `mrn_min_digits` or more digits that is not a
  quantity (`250000/uL` and `100000 units` stay).
- SSN-shaped numbers (`123-45-6789`, or nine digits after `SSN`).
- ages over 89 written with an age cue: `92-year-old`, `95 yo`, `92 years`, `age 95`, `aged 101`,
  `ninety-two years old`. Only the number is replaced, as MIMIC does. `89-year-old` stays; so does a
  bare `92 F` (too close to a temperature or a lab value to take without a cue).
- names after a title (`Dr.`, `Mr.`, `Mrs.`, `Ms.`, `Miss`, `Prof.`): one or two capitalised words with
  initials, so "Dr. Trask" and MTSamples' "Dr. X" both become "Dr. [NAME]". On by default because a
  capitalised word after a title is nearly always a name; names without a title are out of scope.

A learned tagger can run beside the rules (`taggers`, or `tagger_export_dir` in ingestion): its findings
join theirs. `phi_tagger.TokenTagger` runs a model of the pipeline's token-classification task, trained
for instance on an i2b2/n2c2 2014 corpus.

Typed tokens already in the text (`[DATE]`) are never matched again, so scrubbing is idempotent.
Nothing here logs or raises with note text.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from components.clinical_text import lexicon, phi_tokens
from components.clinical_text.name_finder import NameFinder, tokens
from components.clinical_text.place_finder import PlaceFinder
from components.clinical_text.surrogates import Surrogates

SURROGATE_MODES = ("placeholder", "realistic")


@dataclasses.dataclass(frozen=True)
class ScrubberConfig:
    """Which identifier kinds the scrubber replaces. Travels as JSON: see `from_dict` and `to_dict`."""

    #: Dates with a day or month next to a year, and month-name dates (`Mar 14`); not years alone.
    dates: bool = True
    #: Telephone, fax and pager numbers.
    phones: bool = True
    #: E-mail addresses.
    emails: bool = True
    #: URLs and bare domain names (`example.org/portal`).
    urls: bool = True
    #: Record numbers after a cue (`MRN:`) and long bare numbers (see `mrn_min_digits`).
    mrns: bool = True
    #: SSN-shaped numbers.
    ssns: bool = True
    #: Ages of 90 and over next to an age cue (HIPAA lets ages up to 89 stay).
    ages_over_89: bool = True
    #: Capitalised names after a title such as "Dr." or "Mrs.".
    titled_names: bool = True
    #: Names without a title, in any case, from context and census name lists (see `name_finder`).
    untitled_names: bool = True
    #: Streets, cities and towns, zip codes, hospitals and other facilities (see `place_finder`).
    locations: bool = True
    #: Date elements without a year, as Safe Harbor requires: `9/14`, `the 3rd`, month names, holidays.
    month_day_dates: bool = True
    #: Also years alone (`in 2010`, `'99`). Safe Harbor lets years stay, so off by default.
    years: bool = False
    #: "placeholder": typed tokens (`[NAME]`). "realistic": invented values of the same kind, the same
    #: for the same value within a patient, dates shifted by one offset per patient (see `surrogates`).
    surrogates: str = "placeholder"
    #: Secret mixed into surrogate choices and date offsets, so they cannot be recomputed without it.
    surrogate_key: str = ""
    #: Largest date shift, in days, either way.
    max_date_shift_days: int = 365
    #: A bare number (no cue) with at least this many digits is taken for a record number. Lower values
    #: catch short ids and start to take lab values and counts.
    mrn_min_digits: int = 6
    #: Digits needed in an id that follows a cue such as "MRN:" (cued ids are short in some systems).
    cued_id_min_digits: int = 4
    #: Site-specific identifiers: (regular expression, typed token) pairs, e.g.
    #: `(r"\bSTUDY-\d{5}\b", "[ID]")`. The token must be one of `phi_tokens.PHI_TOKENS`.
    extra_patterns: tuple[tuple[str, str], ...] = ()
    #: A learned tagger run beside the rules (the union of findings): the SavedModel folder of one
    #: pushed version of a token-classification model (see `phi_tagger`); "" for the rules alone.
    #: Ingestion (`TextSteps`) loads it once per worker; a `Scrubber` runs only the taggers it is given.
    tagger_export_dir: str = ""
    #: The tagger's entity type -> kind (a `KIND_TOKENS` key, "other" for `[PHI]`, or null to keep the
    #: text), over `phi_tagger.I2B2_KINDS`, e.g. `{"STATE": "location"}`.
    tagger_kinds: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        errors = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "bool" and not isinstance(value, bool):
                errors.append(f"{field.name} must be true or false, got {value!r}")
        for name in ("mrn_min_digits", "cued_id_min_digits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 3:
                errors.append(f"{name} must be an integer >= 3, got {value!r}")
        if self.surrogates not in SURROGATE_MODES:
            errors.append(f"surrogates must be one of {SURROGATE_MODES}, got {self.surrogates!r}")
        if not isinstance(self.surrogate_key, str):
            errors.append("surrogate_key must be a string")
        shift = self.max_date_shift_days
        if isinstance(shift, bool) or not isinstance(shift, int) or shift < 1:
            errors.append(f"max_date_shift_days must be an integer >= 1, got {shift!r}")
        patterns = self.extra_patterns
        if isinstance(patterns, (list, tuple)):
            # JSON gives lists; store tuples so the config stays hashable and compares equal.
            patterns = tuple(tuple(pair) if isinstance(pair, list) else pair for pair in patterns)
            object.__setattr__(self, "extra_patterns", patterns)
        else:
            errors.append("extra_patterns must be a list of (pattern, token) pairs")
            patterns = ()
        for index, pair in enumerate(patterns):
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                errors.append(f"extra_patterns[{index}] must be a (pattern, token) pair of strings")
                continue
            pattern, token = pair
            if token not in phi_tokens.PHI_TOKENS:
                errors.append(f"extra_patterns[{index}] token {token!r} is not a typed token")
            try:
                re.compile(pattern)
            except re.error as error:
                errors.append(f"extra_patterns[{index}] is not a valid regular expression: {error}")
        if not isinstance(self.tagger_export_dir, str):
            errors.append("tagger_export_dir must be a string")
        errors += self._check_tagger_kinds()
        if errors:
            raise ValueError("invalid ScrubberConfig: " + "; ".join(errors))

    def _check_tagger_kinds(self) -> list[str]:
        """Stores `tagger_kinds` as sorted (type, kind) pairs (JSON gives an object); what is wrong."""
        kinds = self.tagger_kinds
        if isinstance(kinds, Mapping):
            kinds = kinds.items()
        try:
            pairs = tuple(sorted((tuple(pair) for pair in kinds), key=lambda pair: str(pair[0])))
        except (TypeError, IndexError):
            return ["tagger_kinds must map entity types to kinds"]
        object.__setattr__(self, "tagger_kinds", pairs)
        allowed = {*KIND_TOKENS, OTHER_KIND}
        wrong = [
            pair
            for pair in pairs
            if len(pair) != 2 or not isinstance(pair[0], str) or not (pair[1] is None or pair[1] in allowed)
        ]
        if wrong:
            names = ", ".join(sorted(allowed))
            return [f"tagger_kinds must map entity types to one of {names} or null, got {wrong}"]
        return []

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ScrubberConfig:
        """Build a config from a JSON object; unknown keys are an error that names them."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            known_list = ", ".join(sorted(known))
            raise ValueError(f"unknown ScrubberConfig keys: {', '.join(unknown)} (known: {known_list})")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict; `from_dict(to_dict())` gives it back."""
        values = dataclasses.asdict(self)
        values["extra_patterns"] = [list(pair) for pair in self.extra_patterns]
        values["tagger_kinds"] = dict(self.tagger_kinds)
        return values


@dataclasses.dataclass(frozen=True)
class Finding:
    """One identifier: characters [start, end) of the text, the rule kind that found it, its token."""

    start: int
    end: int
    #: The rule that found it: date, phone, email, url, mrn, ssn, age, name or extra.
    kind: str
    token: str


@dataclasses.dataclass(frozen=True)
class ScrubResult:
    """The scrubbed text, how many findings became each typed token, and the findings themselves."""

    text: str
    counts: dict[str, int]
    findings: tuple[Finding, ...]


@dataclasses.dataclass(frozen=True)
class _Rule:
    """A pattern for one kind. The finding is the group named `phi` when there is one, else the match.

    `accept`, when given, must return True for the text and the found span (checks a regex cannot
    express cheaply: digit counts, what precedes the match); `strip` lists characters removed from the
    end of the found string (sentence punctuation after a URL).
    """

    kind: str
    token: str
    pattern: re.Pattern[str]
    accept: Callable[[str, int, int], bool] | None = None
    strip: str = ""


def _rule(kind: str, token: str, pattern: str, **options: Any) -> _Rule:
    return _Rule(kind, token, re.compile(pattern, re.VERBOSE), **options)


def _has_digits(low: int, high: int = 99) -> Callable[[str, int, int], bool]:
    return lambda text, start, end: low <= sum(char.isdigit() for char in text[start:end]) <= high


# Reference numbers of public code systems, which identify a disease or a drug, not a person.
_CODE_SYSTEM_BEFORE = re.compile(
    r"(?i:\b(?:o?mim|pmid|pmcid|ndc|cpt|icd(?:-?\d+)?|loinc|snomed|nct)[ ]?[:#]?[ ]?)$"
)


def _not_a_code(text: str, start: int, end: int) -> bool:
    return _CODE_SYSTEM_BEFORE.search(text, max(0, start - 16), start) is None


# Building blocks. A number's edges: not inside a longer number, word or decimal.
_START = r"(?<![\w/.,+-])"
_END = r"(?![\w/]|[-.,]\d)"
# A quantity after a number: "100000 units", "250000/uL", "5 mg".
_UNIT = r"""(?:\s?(?:%|/|x\s?10|(?i:units?|iu|u|mg|mcg|ug|g|kg|ml|l|cc|cells|copies|k|mm3|ul|meq|mmol|ng|pg|
    mcl|lbs?|oz|cm|mm)\b))"""
# A date's edges may be a dash, so both dates of "3/14/2021-3/20/2021" are found; no dose unit may
# follow ("titrate 5-10-15 mg"). Single letters stay allowed: "3/14/21 L knee", "3/14/21 U/S".
_DOSE_UNIT = r"\s?(?:%|(?i:mg|mcg|ug|kg|ml|units?|iu|meq|mmol)\b)"
_DATE_START = r"(?<![\w/.,+])"
_DATE_END = rf"(?![\w/]|[.,]\d|{_DOSE_UNIT})"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH_NUMBER = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:19|20)\d\d"
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")  # fmt: skip


def _month_names() -> str:
    """Month names and abbreviations, capitalised or upper case ("Sep", "SEPT.", "September")."""
    forms = []
    for month in _MONTHS:
        stem = "Sept" if month == "September" else month[:3]
        rest = month[len(stem) :]
        forms += [f"{stem}(?:{rest})?", f"{stem.upper()}(?:{rest.upper()})?"]
    forms += ["Sep", "SEP"]
    return "(?:" + "|".join(forms) + r")(?![A-Za-z])\.?"


_MONTH_NAME = _month_names()
_ORDINAL_DAY = rf"{_DAY}(?:st|nd|rd|th)?(?!\d)"
_DATE_RULES = (
    # 03/14/2021, 3/14/21, 14-03-2021 (day or month first; one separator throughout).
    rf"{_DATE_START}{_DAY}(?P<sep>[/-]){_DAY}(?P=sep)(?:{_YEAR}|\d\d){_DATE_END}",
    # 14.03.2021 (dotted, four-digit year only: "1.5.10" is more likely a list number).
    rf"{_DATE_START}{_DAY}\.{_DAY}\.{_YEAR}{_DATE_END}",
    # 2021-03-14, 2021/03/14, 2021.03.14.
    rf"{_DATE_START}{_YEAR}(?P<sep>[-/.]){_MONTH_NUMBER}(?P=sep){_DAY}{_DATE_END}",
    # 3/2021.
    rf"{_DATE_START}{_MONTH_NUMBER}/{_YEAR}{_DATE_END}",
    # March 14, 2021; Mar. 14th 2021; Mar 14-16, 2021; Mar 14 (not "May 5 mg").
    rf"""\b{_MONTH_NAME}[ ]?{_ORDINAL_DAY}(?:[ ]?-[ ]?{_ORDINAL_DAY})?
        (?:(?:,[ ]?|[ ])(?:of[ ])?{_YEAR}\b|(?!{_DOSE_UNIT}|[-:/.,]?\d))""",
    # 14 Mar 2021, 14-MAR-2021, 14th of March.
    rf"{_START}{_ORDINAL_DAY}(?:[ ]of)?[ -]{_MONTH_NAME}(?:,?[ -]{_YEAR}\b)?",
    # March 2021, Mar-2021, March of 2021.
    rf"\b{_MONTH_NAME}(?:,?[ ]|-|[ ]of[ ]){_YEAR}\b",
)

# Dates without a year. A numeric month/day pair is the shape of a fraction, a score or a ratio too, so
# `_month_day_ok` looks at its neighbours.
_DATE_CUE = (
    r"(?i:on|since|from|until|till|thru|through|by|before|after|dated|starting|start|effective|last|"
    r"next|admitted|admission|discharged|discharge|seen|done|drawn|due|as[ ]of|mon|tue|tues|wed|thu|"
    r"thur|thurs|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday|am|pm|date|dos|"
    r"doa|dob|today|yesterday|tomorrow)"
)
_DATE_CUE_BEFORE = re.compile(rf"\b{_DATE_CUE}[ :]*$")
_NOT_A_DATE_BEFORE = re.compile(
    r"(?i:\b(?:bp|blood[ ]pressure|strength|str|motor|murmur|grade|gr|vision|va|apgars?|ratio|score|"
    r"scale|mae|ie|i:e|x|rr|peep|ps|cpap|bipap|vent|rate|pressure|abp|nbp|cvp|pap|sbp|dbp|gcs|pain|"
    r"tabs?|take|of)[ :]*)$"
)
_NOT_A_DATE_AFTER = re.compile(
    r"(?i:[ ]?(?:strength|murmur|pulses?|tabs?|tablets?|caps?|of|ns|normal|scale|systolic|diastolic|"
    r"sem|hsm|dose|doses|strength|in[ ]\d|x|rr|bpm|pain|%|cc|ml|mg|grade|times|hrs|hours|days)\b)"
)
_FRACTIONS = frozenset(("1/2", "1/3", "2/3", "1/4", "3/4", "1/8", "1/5", "2/5", "1/6", "1/10"))


def _month_day_ok(text: str, start: int, end: int) -> bool:
    value = text[start:end]
    before = text[max(0, start - 24) : start]
    if _DATE_CUE_BEFORE.search(before):
        return True
    month, day = value.split("/")
    if value in _FRACTIONS or month == day or _NOT_A_DATE_BEFORE.search(before):
        return False
    return _NOT_A_DATE_AFTER.match(text, end) is None


# "the 3rd time", "the 4th ventricle", "the 2nd day": an ordinal before a noun counts, not a date.
_ORDINAL_NOUN_AFTER = re.compile(
    r"""[ -]+(?i:times?|degree|ventricle|finger|toe|rib|ribs|nerve|cranial|day|days|week|weeks|month|year|
    grade|trimester|percentile|centile|intercostal|ics|dose|doses|cycle|attempt|try|floor|generation|
    edition|line|pod|hd|decade|space|digit|metacarpal|metatarsal|lumbar|sacral|cervical|thoracic|
    toe|unit|round|bag|liter|litre|unit|set|one|set|stage|branch|arch|layer|order|person|pregnancy|
    child|sibling|opinion|shift|look|episode|lumbrical|heart|sound|component|visit)\b""",
    re.VERBOSE,
)


def _ordinal_day_ok(text: str, start: int, end: int) -> bool:
    return _ORDINAL_NOUN_AFTER.match(text, end) is None


_HOLIDAYS = (
    r"christmas(?:[ ](?:eve|day))?|x-?mas|thanksgiving(?:[ ]day)?|easter(?:[ ]sunday)?|"
    r"new[ ]year['’]?s(?:[ ](?:day|eve))?|halloween|hanukk?ah|chanukah|passover|memorial[ ]day|"
    r"labor[ ]day|independence[ ]day|(?:fourth|4th)[ ]of[ ]july|july[ ](?:4th|fourth)|"
    r"valentine['’]?s(?:[ ]day)?|mother['’]?s[ ]day|father['’]?s[ ]day|veteran['’]?s['’]?[ ]day|"
    r"president['’]?s['’]?[ ]day|columbus[ ]day|mlk[ ]day|martin[ ]luther[ ]king[ ](?:jr\.?[ ])?day|"
    r"yom[ ]kippur|rosh[ ]hashanah?|ramadan|kwanzaa|good[ ]friday|st\.?[ ]patrick['’]?s[ ]day|"
    r"super[ ]bowl[ ]sunday|boxing[ ]day"
)
_MONTH_DAY_RULES: tuple[tuple[str, Callable[[str, int, int], bool] | None], ...] = (
    # 9/14, 09/14, and both ends of 9/14-9/20.
    (rf"(?<![\w/.,+]){_MONTH_NUMBER}/{_DAY}(?![\w/]|[.,]\d|:\d|{_DOSE_UNIT})", _month_day_ok),
    # the 3rd, on the 21st (not "the 3rd time", "the 4th ventricle").
    (rf"(?i:\bthe[ ])(?P<phi>{_DAY}(?:st|nd|rd|th))\b", _ordinal_day_ok),
    # Month names alone; "May" and abbreviations only after a cue ("in May", "early Dec").
    (r"\b(?:January|February|March|April|June|July|August|September|October|November|December|"
     r"JANUARY|FEBRUARY|MARCH|APRIL|JUNE|JULY|AUGUST|SEPTEMBER|OCTOBER|NOVEMBER|DECEMBER)\b", None),
    (r"(?i:\b(?:in|on|over|around|since|of|until|till|early|late|mid|last|next|this|during|by|from|"
     r"through|thru|before|after)[ -])"
     r"(?P<phi>May|MAY|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)\b\.?)(?![\w-])",
     None),
    (rf"(?i:\b(?:{_HOLIDAYS}))(?![\w])", None),
)  # fmt: skip
_YEAR_RULES = (
    rf"(?<![\w/.,+:$-]){_YEAR}(?![\w/]|[.,]\d|:\d|{_UNIT})",
    r"(?<![\w'’])['’](?:[0-9]\d)(?![\w'’])",
)

_EXTENSION = r"(?:[ ]?,?[ ]?(?i:x|ext\.?|extension)[ ]?\d{1,6})"
# A phone number may follow a word and a dash ("home-617-555-0123"), and its parts may be split by a
# dash and a space or by a slash ("617/555- 0123").
_PHONE_START = r"(?:(?<![\w/.,+-])|(?<=[A-Za-z ]-))"
_PHONE_SEPARATOR = r"(?:[ .-]|-[ ]|/)"
_PHONE_RULES = (
    # (617) 555-0123, 617-555-0123, 617.555.0123, 617 555 0123, 617 5550123, +1 617 555 0123,
    # 1-617-555-0123 x12, 617/555-0123.
    (
        rf"""{_PHONE_START}(?:\+?1[ .-]?)?(?:\(\d{{3}}\)[ ]?|\d{{3}}{_PHONE_SEPARATOR})\d{{3}}
        (?:[ .-]|-[ ])?\d{{4}}{_EXTENSION}?{_END}""",
        None,
    ),
    # A local number without area code: 555-0123, 555- 0123 (not a range: no unit may follow).
    (rf"{_PHONE_START}\d{{3}}-[ ]?\d{{4}}(?!{_UNIT}){_END}", None),
    # A pager or extension of 3 to 5 digits after its cue: "pager 4-1234", "beeper #321", "ext 45678".
    (
        rf"""(?i:\b(?:pager|pgr|beeper|beep|bpr|paged(?:[ ]at)?|ext\.?|extension)[ ]?(?:no\.?|number)?
        [ ]?[:\#]?[ ]?)(?P<phi>\d{{3,5}}|\d-\d{{4}})(?![\w/]|[.,]\d|{_UNIT})""",
        None,
    ),
    # +44 20 7946 0958: a plus sign, then 8 to 15 digits in groups.
    (rf"(?<![\w+])\+\d{{1,3}}(?:[ .-]?\(?\d{{1,5}}\)?){{2,5}}{_END}", _has_digits(8, 15)),
    # After a cue: "pager 12345", "fax: 6175550123", "tel # 555 0123".
    (
        rf"""(?i:\b(?:tel(?:ephone)?|phone|fax|pager|beeper|cell|mobile|call(?:ed)?(?:[ ]at)?)\b\.?
        (?:[ ]?(?:no\.?|number|\#))?[ ]?[:\#]?[ ]?)
        (?P<phi>\+?\(?\d[\d ().-]*\d{_EXTENSION}?){_END}""",
        _has_digits(4, 15),
    ),
)

_EMAIL_RULE = (
    r"(?<![\w.%+-])[A-Za-z0-9][\w.%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*"
    r"\.[A-Za-z]{2,}(?![\w-])"
)
_URL_PATH = r"""(?:[/?\#][^\s<>\[\]"']*)?"""
_TOP_LEVEL_DOMAINS = "com|org|net|edu|gov|mil|int|info|biz|health|io|us|uk|ca|au|nz|ie|de|fr|nl|eu"
_URL_RULES = (
    r"""\b(?:https?|ftp)://[^\s<>\[\]"']+""",
    rf"(?<![\w@.-])www\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+{_URL_PATH}",
    # Bare domains need a known, lower-case top-level domain: "example.org/clinic".
    rf"(?<![\w@.-])(?:[A-Za-z0-9-]+\.)+(?:{_TOP_LEVEL_DOMAINS})(?![\w@-]){_URL_PATH}",
)
_URL_TRAILING = ".,;:!?)'\""

_MRN_CUE = r"""(?i:\b(?:
    mrn|mr[ ]?\#|mr[ ]?no\.?|mr[ ]number|med(?:ical)?[ ]rec(?:ord)?\.?[ ]?(?:number|no\.?|\#)
    |(?:record|chart|account|acct\.?|patient|pt\.?|unit|hospital|accession|encounter|admission)
        [ ]?(?:number|no\.?|\#|id)
    |id[ ]?(?:number|no\.?|\#|:)|identifier
    )(?:[ ](?:is|was|of|=))?[ ]?[:\#]?[ ]?)"""
_SSN_RULES = (
    rf"(?<![\w-])\d{{3}}-\d{{2}}-\d{{4}}{_END}",
    rf"(?i:\b(?:ssn|ss[ ]?\#|social[ ]security(?:[ ](?:number|no\.?|\#))?)[ ]?[:\#]?[ ]?)"
    rf"(?P<phi>\d{{3}}[ -]?\d{{2}}[ -]?\d{{4}}){_END}",
)

_UNITS_WORD = "one|two|three|four|five|six|seven|eight|nine"
_AGE_OVER_89 = (
    rf"(?:9\d|1[01]\d|12\d"
    rf"|(?i:ninety(?:[- ](?:{_UNITS_WORD}))?|one[ ]hundred(?:[ ]and[ ](?:{_UNITS_WORD}))?))"
)
_AGE_RULES = (
    # 92-year-old, 92 years old, 92 years, 92 yrs of age, 92 y old, 92 yo, 92 y/o, 92-y.o. A span of
    # 90 years or more is an age (or reveals one) whatever the sentence says.
    rf"""{_START}(?P<phi>{_AGE_OVER_89})(?i:[ -]?(?:years?|yrs?)\b|[ -]?y\.?[ -](?:old|of[ ]age)\b
        |[ -]?(?:yo|y/o|y\.o\.?|yoa)(?![a-z]))""",
    # age 95, aged 101, Age: 93, at the age of 90.
    rf"(?i:\b(?:age|aged|age[ ]of)[ ]?[:=]?[ ]?)(?P<phi>{_AGE_OVER_89})(?!{_DOSE_UNIT}){_END}",
    # in her 90s, in his late nineties.
    r"(?i:\bin[ ](?:his|her|their|the)[ ](?:early[ ]|mid[ -]?|late[ ])?)"
    r"(?P<phi>(?:9\d|1[01]\d)['’]?s|nineties)\b",
)

# Upper-case "MR" and "MS" are left out: in notes they are mitral regurgitation and multiple sclerosis.
_TITLES = "Dr|Drs|Doctor|Mr|Mrs|Ms|Mx|Miss|Prof|Professor|DR|MRS"
# Words that follow a title without being a name ("Dr. X. He said"), and, after an initial, words that
# more often start the next sentence ("Dr. X. Unfortunately") than complete a name ("Dr. J. Smith").
_NOT_NAMES = (
    rf"(?!(?i:{_TITLES}|he|she|they|we|i|it|the|this|that|his|her|their|there|and|or|at|in|on|of|to|for)\b)"
)
_SENTENCE_STARTS = (
    r"(?!(?i:a|an|if|but|so|then|also|as|after|before|when|while|since|however|unfortunately|under|"
    r"follow(?:up|-up)?|please|thank|thanks|no|yes|not|all|both|patient|pt|plan|will|was|is|has|had|"
    r"did|does|can|may|should|would|could|here|these|those|my|our|your|you)\b)"
)
_NAME_WORD = rf"{_NOT_NAMES}(?:[A-Z][A-Za-z]+|[A-Z](?=['’][A-Z]))(?:['’-][A-Z][A-Za-z]+)*"
_LETTER = rf"{_NOT_NAMES}[A-Z](?![\w-]|['’][A-Z])"
# "Dr. J. R. Smith" | "Dr. John A. Smith", "Mrs. O'Brien-Lee", "Dr. X" (name placeholders).
_NAME_RULE = rf"""(?<![\w.])(?:{_TITLES})(?:\.[ ]*|[ ]+)
    (?P<phi>(?:[A-Z]\.[ ]?)+{_SENTENCE_STARTS}{_NAME_WORD}
    |(?:{_NAME_WORD}|{_LETTER})(?:[ ]+(?:[A-Z]\.[ ]+)*{_NAME_WORD})?)"""

_TYPED_TOKEN = re.compile("|".join(re.escape(token) for token in phi_tokens.PHI_TOKENS))


def _rules(config: ScrubberConfig) -> list[_Rule]:
    """The rules the config switches on. Overlaps are merged later; where two candidates are equally long,
    the kind of the rule listed first names the finding (a cued SSN is an ssn, not a bare record number).
    """
    rules: list[_Rule] = []
    if config.dates:
        rules += [_rule("date", phi_tokens.DATE, pattern) for pattern in _DATE_RULES]
    if config.phones:
        rules += [_rule("phone", phi_tokens.PHONE, pattern, accept=check) for pattern, check in _PHONE_RULES]
    if config.emails:
        rules.append(_rule("email", phi_tokens.EMAIL, _EMAIL_RULE))
    if config.urls:
        rules += [_rule("url", phi_tokens.URL, pattern, strip=_URL_TRAILING) for pattern in _URL_RULES]
    if config.ssns:
        rules += [_rule("ssn", phi_tokens.ID, pattern) for pattern in _SSN_RULES]
    if config.mrns:
        cued = rf"{_MRN_CUE}(?P<phi>(?:[A-Za-z]{{1,3}}-?)?\d[\d-]*\d){_END}"
        bare = rf"{_START}\d{{{config.mrn_min_digits},}}(?!{_UNIT}){_END}"
        rules.append(_rule("mrn", phi_tokens.ID, cued, accept=_has_digits(config.cued_id_min_digits)))
        rules.append(_rule("mrn", phi_tokens.ID, bare, accept=_not_a_code))
    if config.ages_over_89:
        rules += [_rule("age", phi_tokens.AGE, pattern) for pattern in _AGE_RULES]
    if config.titled_names:
        rules.append(_rule("name", phi_tokens.NAME, _NAME_RULE))
    if config.month_day_dates:
        rules += [
            _rule("date", phi_tokens.DATE, pattern, accept=check) for pattern, check in _MONTH_DAY_RULES
        ]
    if config.years:
        rules += [_rule("date", phi_tokens.DATE, pattern) for pattern in _YEAR_RULES]
    rules += [_Rule("extra", token, re.compile(pattern)) for pattern, token in config.extra_patterns]
    return rules


#: Typed token of each kind a finder or a tagger may report.
KIND_TOKENS = {
    "date": phi_tokens.DATE,
    "phone": phi_tokens.PHONE,
    "email": phi_tokens.EMAIL,
    "url": phi_tokens.URL,
    "mrn": phi_tokens.ID,
    "ssn": phi_tokens.ID,
    "id": phi_tokens.ID,
    "age": phi_tokens.AGE,
    "name": phi_tokens.NAME,
    "location": phi_tokens.LOCATION,
    "hospital": phi_tokens.HOSPITAL,
    "contact": phi_tokens.CONTACT,
}
#: The kind of a tagger's finding that is none of `KIND_TOKENS`: replaced by `[PHI]`.
OTHER_KIND = "other"


class PhiTagger(Protocol):
    """A learned tagger run beside the rules: yields (start, end, kind) spans of `text`, kind being one
    of `KIND_TOKENS` (anything else becomes `[PHI]`). See `phi_tagger.TokenTagger`, which runs a model
    of the pipeline's token-classification task."""

    def tag(self, text: str) -> Iterable[tuple[int, int, str]]: ...


class Scrubber:
    """Finds identifiers with the rules `config` switches on, and with any `taggers` given (the union of
    all findings), and replaces them with typed tokens or surrogates."""

    def __init__(self, config: ScrubberConfig | None = None, taggers: Sequence[PhiTagger] = ()) -> None:
        self.config = config if config is not None else ScrubberConfig()
        self._rules = _rules(self.config)
        self._taggers = tuple(taggers)
        needs_lexicon = self.config.untitled_names or self.config.locations
        words = lexicon.load() if needs_lexicon else None
        self._names = NameFinder(words) if words and self.config.untitled_names else None
        self._places = PlaceFinder(words) if words and self.config.locations else None

    def _candidates(self, text: str) -> Iterator[Finding]:
        for rule in self._rules:
            group = "phi" if "phi" in rule.pattern.groupindex else 0
            for match in rule.pattern.finditer(text):
                start, end = match.span(group)
                while end > start and text[end - 1] in rule.strip:
                    end -= 1
                if end > start and (rule.accept is None or rule.accept(text, start, end)):
                    yield Finding(start, end, rule.kind, rule.token)
        words = tokens(text) if self._names or self._places else []
        if self._names:
            for start, end in self._names.find(text, words):
                yield Finding(start, end, "name", phi_tokens.NAME)
        if self._places:
            for start, end, kind in self._places.find(text, words):
                yield Finding(start, end, kind, KIND_TOKENS[kind])
        for tagger in self._taggers:
            for start, end, kind in tagger.tag(text):
                if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
                    raise ValueError(f"tagger {type(tagger).__name__} gave an invalid span {start}-{end}")
                yield Finding(start, end, kind, KIND_TOKENS.get(kind, phi_tokens.OTHER))

    def find(self, text: str) -> list[Finding]:
        """Identifiers in `text`, sorted and non-overlapping.

        Candidates that touch a typed token already in the text are dropped. Overlapping candidates
        merge into one finding spanning them all (so no part of either survives), which takes the kind
        of the longest.
        """
        tokens_in_text = [match.span() for match in _TYPED_TOKEN.finditer(text)]
        token_ends = [end for _, end in tokens_in_text]
        candidates = []
        for candidate in self._candidates(text):
            # Tokens are sorted and disjoint: only the first one ending after `start` can overlap.
            index = bisect.bisect_right(token_ends, candidate.start)
            if index < len(tokens_in_text) and tokens_in_text[index][0] < candidate.end:
                continue
            candidates.append(candidate)
        candidates.sort(key=lambda finding: (finding.start, finding.start - finding.end))
        merged: list[Finding] = []
        for candidate in candidates:
            if merged and candidate.start < merged[-1].end:
                last = merged[-1]
                longest = max(last, candidate, key=lambda finding: finding.end - finding.start)
                merged[-1] = Finding(last.start, max(last.end, candidate.end), longest.kind, longest.token)
            else:
                merged.append(candidate)
        return merged

    def scrub(self, text: str, patient: str = "") -> ScrubResult:
        """`text` with every finding replaced by its typed token, or by a surrogate when the config asks
        for them; `patient` (a group id) keeps surrogates consistent across one patient's notes."""
        findings = self.find(text)
        surrogate = None
        if self.config.surrogates == "realistic":
            surrogate = Surrogates(self.config.surrogate_key, patient, self.config.max_date_shift_days)
        pieces = []
        position = 0
        for finding in findings:
            original = text[finding.start : finding.end]
            replacement = surrogate.replace(original, finding.kind) if surrogate else finding.token
            pieces += [text[position : finding.start], replacement]
            position = finding.end
        pieces.append(text[position:])
        counts = Counter(finding.token for finding in findings)
        return ScrubResult("".join(pieces), dict(counts), tuple(findings))
