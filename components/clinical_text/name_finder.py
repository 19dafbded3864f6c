"""Names of people without a fixed shape: patients, relatives and clinicians, titled or not, any case.

A word is taken for a name from its context and from census name lists (`lexicon`):

- after a title in any case (`dr smith`, `Mrs. Okafor`); a capitalised word is enough, a lower-case
  one must be a listed name that is not an ordinary word;
- after a cue that introduces a person: a relation (`wife`, `son`, `HCP`), a role (`RN`, `attending`),
  or a verb (`seen by`, `spoke with`, `called`, `per`); a capitalised word that is not an ordinary word
  is enough after a relation or role, a listed name is needed after a verb;
- before a credential (`Ann Lee, RN`, `J. Smith MD`);
- on its own when it is a listed name, capitalised, and not an ordinary word (`Kathy`, `Okafor` is not
  listed and needs context), or a lower-case given name followed by a lower-case surname.

A name found so continues over the capitalised words and initials right after it ("Kathy Ann Lee").
Ordinary words are those of `lexicon.Lexicon.common`: names that clinical text uses as words ("Will",
"Hope", "Bell", "Foley", "Parkinson") are taken only with context. No library was found to do this for
clinical text within the speed budget: NER models need tagged notes and a GPU-scale budget, and
philter-lite's lists with its regular expressions cost about 150 ms a note.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from components.clinical_text.lexicon import STOP_WORDS, Lexicon

_TOKEN = re.compile(r"[A-Za-z](?:[A-Za-z]|['’](?=[A-Za-z])|-(?=[A-Za-z]))*")
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)
#: States may stay (Safe Harbor); some are also given names ("Florida").
STATE_NAMES = frozenset(
    [
        "alabama",
        "alaska",
        "arizona",
        "arkansas",
        "california",
        "colorado",
        "connecticut",
        "delaware",
        "florida",
        "georgia",
        "hawaii",
        "idaho",
        "illinois",
        "indiana",
        "iowa",
        "kansas",
        "kentucky",
        "louisiana",
        "maine",
        "maryland",
        "massachusetts",
        "michigan",
        "minnesota",
        "mississippi",
        "missouri",
        "montana",
        "nebraska",
        "nevada",
        "ohio",
        "oklahoma",
        "oregon",
        "pennsylvania",
        "tennessee",
        "texas",
        "utah",
        "vermont",
        "virginia",
        "washington",
        "wisconsin",
        "wyoming",
    ]
)
TITLES = frozenset(["dr", "drs", "doctor", "mr", "mrs", "ms", "miss", "mx", "prof", "professor"])
#: Cues after which a capitalised unknown word is a name.
RELATIONS = frozenset(
    [
        "wife",
        "husband",
        "son",
        "sons",
        "daughter",
        "daughters",
        "dtr",
        "mother",
        "mom",
        "father",
        "dad",
        "sister",
        "sis",
        "brother",
        "bro",
        "niece",
        "nephew",
        "aunt",
        "uncle",
        "cousin",
        "grandson",
        "granddaughter",
        "grandmother",
        "grandfather",
        "grandma",
        "grandpa",
        "stepson",
        "stepdaughter",
        "friend",
        "neighbor",
        "neighbour",
        "partner",
        "fiance",
        "fiancee",
        "boyfriend",
        "girlfriend",
        "spouse",
        "hcp",
        "proxy",
        "guardian",
        "sitter",
        "caregiver",
        "attending",
        "resident",
        "intern",
        "fellow",
        "nurse",
        "rn",
        "np",
        "pa",
        "md",
        "pcp",
        "dear",
        "signed",
        "cosigned",
        "cc",
    ]
)
#: Cues after which only a listed name is taken.
VERBS = frozenset(
    [
        "by",
        "with",
        "per",
        "called",
        "paged",
        "notified",
        "informed",
        "aware",
        "contacted",
        "spoke",
        "spoken",
        "talked",
        "told",
        "asked",
        "saw",
        "seen",
        "met",
        "visited",
        "discussed",
    ]
)
CREDENTIALS = frozenset(
    ["MD", "RN", "NP", "PA", "PAC", "PA-C", "LPN", "CNA", "RRT", "DO", "MSW", "LICSW", "NP-C", "CRNA", "PhD"]
)
_CREDENTIAL_KEYS = frozenset(word.lower() for word in CREDENTIALS)
#: Sentence starts that follow an initial or a title without being part of the name.
_NOT_AFTER_TITLE = STOP_WORDS | frozenset(["unfortunately", "however", "please", "thank", "thanks"])

#: What follows a surname used as an eponym: "Graves' disease", "Swan-Ganz", "Foley catheter".
EPONYM_AFTER = re.compile(
    r"(?:['’]s?)?(?:[ ](?:and|or)(?:[ ][A-Z][a-z]+){1,2}(?:['’]s?)?(?=[ ][a-z]))?"
    r"(?:-[A-Z]|[ ](?i:disease|syndrome|sign|test|catheter|drain|maneuver|manoeuvre|score|"
    r"criteria|classification|procedure|operation|tube|fracture|reflex|node|nodes|phenomenon|"
    r"palsy|retractor|forceps|clamp|stitch|needle|scale|stain|type|solution|equation|exact|correlation|"
    r"disorder|tumor|tumour|lymphoma|sarcoma|anomaly|ulcer|cyst|triad|position|incision|repair|"
    r"approach|technique|method|line|lines|filter|valve|shunt|stocking|stockings|boot|boots|muscular|"
    r"dystrophy|variant|breakage|chorea|ataxia|dementia|neuropathy|myopathy|dysplasia|sclerosis|atrophy|"
    r"anemia|anaemia|deficiency|enzyme|carcinoma|virus|fever|cardiomyopathy|gene|protein|locus)\b)"
)

Token = tuple[int, int, str, str]


def tokens(text: str) -> list[Token]:
    """(start, end, word, lower-case key) of each word; a possessive `'s` is left out of the span."""
    found = []
    for match in _TOKEN.finditer(text):
        word = match.group()
        possessive = _POSSESSIVE.search(word) if len(word) > 2 else None
        if possessive:
            word = word[: possessive.start()]
        found.append((match.start(), match.start() + len(word), word, word.lower()))
    return found


def _capitalised(word: str) -> bool:
    return word[0].isupper() and (len(word) == 1 or not word.isupper())


class NameFinder:
    """Finds name spans with a `Lexicon`; see the module docstring for the rules."""

    def __init__(self, lexicon: Lexicon) -> None:
        self._names = lexicon.first_names | lexicon.last_names
        self._first = lexicon.first_names
        self._last = lexicon.last_names
        self._common = lexicon.common

    def _listed(self, key: str) -> bool:
        return key in self._names and key not in self._common

    def find(self, text: str, words: list[Token] | None = None) -> Iterator[tuple[int, int]]:
        """(start, end) of each name, in order; adjacent name words form one span."""
        words = tokens(text) if words is None else words
        count = len(words)
        index = 0
        while index < count:
            if not self._starts_name(text, words, index) or EPONYM_AFTER.match(text, words[index][1]):
                index += 1
                continue
            last = index
            word = words[index][2]
            case = "lower" if word.islower() else "upper" if word.isupper() and len(word) > 1 else "title"
            while last + 1 < count and self._continues(text, words, last, case):
                last += 1
            first = index
            if first and case == "title" and self._precedes(text, words, first):
                first -= 1
            yield words[first][0], words[last][1]
            index = last + 1

    def _gap(self, text: str, words: list[Token], index: int) -> str:
        """The characters between word `index - 1` and word `index`."""
        return text[words[index - 1][1] : words[index][0]]

    def _starts_name(self, text: str, words: list[Token], index: int) -> bool:
        _, _, word, key = words[index]
        if key in STOP_WORDS:
            return False
        if len(word) < 2:
            return self._initial_after_title(text, words, index)
        capitalised = _capitalised(word)
        listed = self._listed(key)
        if index:
            previous = words[index - 1][3]
            gap = self._gap(text, words, index)
            near = "\n" not in gap and len(gap) <= 3
            if near and previous in TITLES and (gap.strip() in ("", ".")):
                if capitalised or word.isupper():
                    return key not in _NOT_AFTER_TITLE
                # "mr" and "ms" are also mitral regurgitation and multiple sclerosis in lower case.
                return key in self._names or (previous not in ("mr", "ms") and key not in self._common)
            if near and previous in RELATIONS and gap.strip(" :,-") == "":
                if capitalised and (key not in self._common or key in self._names):
                    return True
                return listed or (word.isupper() and key in self._names)
            if near and previous in VERBS and gap.strip(" :") == "" and listed:
                return True
        if capitalised and listed and len(word) > 2 and key not in STATE_NAMES:
            return True
        if listed and key in self._first and index + 1 < len(words):
            following = words[index + 1]
            gap = self._gap(text, words, index + 1)
            same_case = following[2].islower() == word.islower()
            return (
                gap == " " and same_case and following[3] in self._last and following[3] not in self._common
            )
        return self._before_credential(text, words, index)

    def _initial_after_title(self, text: str, words: list[Token], index: int) -> bool:
        """`dr n. o'brien`: an initial after a title, followed by a name word."""
        if index == 0 or index + 1 >= len(words) or words[index - 1][3] not in TITLES:
            return False
        if self._gap(text, words, index).strip() not in ("", ".") or "\n" in self._gap(text, words, index):
            return False
        return self._gap(text, words, index + 1) in (". ", " ", ".") and words[index + 1][3] not in STOP_WORDS

    def _before_credential(self, text: str, words: list[Token], index: int) -> bool:
        """`Ann Lee, RN` / `J Smith MD`: up to three capitalised words before a credential."""
        word = words[index][2]
        if not _capitalised(word) or words[index][3] in self._common:
            return False
        for ahead in range(index + 1, min(index + 4, len(words))):
            gap = self._gap(text, words, ahead)
            following = words[ahead][2]
            if following in CREDENTIALS and gap in (" ", ", ", ","):
                return True
            if gap not in (" ", ". ") or not _capitalised(following) or words[ahead][3] in self._common:
                return False
        return False

    def _precedes(self, text: str, words: list[Token], index: int) -> bool:
        """Whether the word before a name is its given name ("Dmitri Fitzgerald", "Rose Whitaker")."""
        _, _, word, key = words[index - 1]
        if self._gap(text, words, index) != " " or not _capitalised(word) or len(word) < 2:
            return False
        if key in STOP_WORDS or key in TITLES or key in RELATIONS or key in VERBS:
            return False
        return key in self._first or key not in self._common

    def _continues(self, text: str, words: list[Token], last: int, case: str) -> bool:
        """Whether the word after `last` belongs to the same name."""
        _, _, word, key = words[last + 1]
        gap = self._gap(text, words, last + 1)
        initial = len(words[last][2]) == 1
        if gap not in (" ", ". " if initial else " ", "." if initial else " "):
            return False
        if key in STOP_WORDS or key in _CREDENTIAL_KEYS:
            return False
        if case == "lower":
            after_initial = len(words[last][2]) == 1
            unlisted = key not in self._common and not key.endswith(("ed", "ing"))
            return word.islower() and (
                key in self._last or ((after_initial or key in self._first) and unlisted)
            )
        if case == "upper":
            return word.isupper() and (key in self._names or key not in self._common)
        if len(word) == 1:
            return word.isupper()
        return (_capitalised(word) or word.isupper()) and (key in self._names or key not in self._common)
