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

Typed tokens already in the text (`[DATE]`) are never matched again, so scrubbing is idempotent.
Nothing here logs or raises with note text.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from components.clinical_text import phi_tokens


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
    #: A bare number (no cue) with at least this many digits is taken for a record number. Lower values
    #: catch short ids and start to take lab values and counts.
    mrn_min_digits: int = 6
    #: Digits needed in an id that follows a cue such as "MRN:" (cued ids are short in some systems).
    cued_id_min_digits: int = 4
    #: Site-specific identifiers: (regular expression, typed token) pairs, e.g.
    #: `(r"\bSTUDY-\d{5}\b", "[ID]")`. The token must be one of `phi_tokens.PHI_TOKENS`.
    extra_patterns: tuple[tuple[str, str], ...] = ()

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
        if errors:
            raise ValueError("invalid ScrubberConfig: " + "; ".join(errors))

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

_EXTENSION = r"(?:[ ]?,?[ ]?(?i:x|ext\.?|extension)[ ]?\d{1,6})"
_PHONE_RULES = (
    # (617) 555-0123, 617-555-0123, 617.555.0123, 617 555 0123, 617 5550123, +1 617 555 0123,
    # 1-617-555-0123 x12.
    (
        rf"{_START}(?:\+?1[ .-]?)?(?:\(\d{{3}}\)[ ]?|\d{{3}}[ .-])\d{{3}}[ .-]?\d{{4}}{_EXTENSION}?{_END}",
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
    rules += [_Rule("extra", token, re.compile(pattern)) for pattern, token in config.extra_patterns]
    return rules


class Scrubber:
    """Finds identifiers with the rules `config` switches on and replaces them with typed tokens."""

    def __init__(self, config: ScrubberConfig | None = None) -> None:
        self.config = config if config is not None else ScrubberConfig()
        self._rules = _rules(self.config)

    def find(self, text: str) -> list[Finding]:
        """Identifiers in `text`, sorted and non-overlapping.

        Candidates that touch a typed token already in the text are dropped. Overlapping candidates
        merge into one finding spanning them all (so no part of either survives), which takes the kind
        of the longest.
        """
        tokens = [match.span() for match in _TYPED_TOKEN.finditer(text)]
        token_ends = [end for _, end in tokens]
        candidates = []
        for rule in self._rules:
            group = "phi" if "phi" in rule.pattern.groupindex else 0
            for match in rule.pattern.finditer(text):
                start, end = match.span(group)
                while end > start and text[end - 1] in rule.strip:
                    end -= 1
                if end <= start or (rule.accept is not None and not rule.accept(text, start, end)):
                    continue
                # Tokens are sorted and disjoint: only the first one ending after `start` can overlap.
                index = bisect.bisect_right(token_ends, start)
                if index < len(tokens) and tokens[index][0] < end:
                    continue
                candidates.append(Finding(start, end, rule.kind, rule.token))
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

    def scrub(self, text: str) -> ScrubResult:
        """`text` with every finding replaced by its typed token."""
        findings = self.find(text)
        pieces = []
        position = 0
        for finding in findings:
            pieces += [text[position : finding.start], finding.token]
            position = finding.end
        pieces.append(text[position:])
        counts = Counter(finding.token for finding in findings)
        return ScrubResult("".join(pieces), dict(counts), tuple(findings))
