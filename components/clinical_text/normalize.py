"""Text normalization for clinical notes, and MIMIC's de-identification placeholders as typed tokens.

`normalize_text` makes notes from different sources look alike before anything else reads them:
exports from EHRs carry Windows line ends, NULs, zero-width characters, non-breaking spaces and
fullwidth forms that would otherwise become distinct (and rare) SentencePiece pieces. Paragraph breaks
are kept, as one blank line, because sentence segmentation and section-header detection rely on them.

`replace_mimic_placeholders` maps MIMIC-III's `[**...**]` placeholders to the typed tokens of
`phi_tokens`, by what the placeholder says it replaced. Neither function logs anything.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from components.clinical_text import phi_tokens

# Characters that end a line in some encoding of a note: vertical tab, form feed (page breaks in
# exported documents), NEL, and the Unicode line and paragraph separators.
_LINE_BREAKS = re.compile("\r\n|[\r\v\f\x85\u2028\u2029]")
_SPACE_RUN = re.compile(r"[^\S\n]+")
_TRAILING_SPACE = re.compile(r" +(?=\n|\Z)")
_BLANK_LINES = re.compile(r"\n{3,}")


def _is_dropped(char: str) -> bool:
    """Control (Cc), format (Cf: BOM, zero-width spaces, soft hyphen) and lone surrogate characters."""
    return char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cf", "Cs")


def normalize_text(text: str) -> str:
    """Return `text` in NFKC with `\\n` line ends, no control characters and tidy whitespace.

    Tabs and every other space character become one space; spaces at line ends go; three or more line
    breaks become one blank line (a paragraph break); the result is stripped. Control characters are
    removed before NFKC so that removing them cannot create new compositions, which keeps the function
    idempotent: `normalize_text(normalize_text(t)) == normalize_text(t)`.
    """
    text = _LINE_BREAKS.sub("\n", text)
    text = "".join(char for char in text if not _is_dropped(char))
    text = unicodedata.normalize("NFKC", text)
    text = _SPACE_RUN.sub(" ", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# MIMIC-III placeholder contents, matched from their start (case-insensitive), first match wins. Order
# matters where one kind's wording contains another's: "Hospital Unit Name" and "Hospital Unit Number"
# are hospitals, not names or ids, so hospitals come first. Company and University/College go to
# [LOCATION], as the i2b2 2014 de-identification guidelines file organizations under LOCATION.
_MIMIC_TABLE: tuple[tuple[str, str], ...] = (
    # Hospitals and their wards: "Hospital1 18", "Hospital Unit Name 10", "Hospital Ward Name 1".
    (r"hospital|ward ?name", phi_tokens.HOSPITAL),
    # Contact details.
    (r"telephone|fax|pager|phone", phi_tokens.PHONE),
    (r"e-?mail", phi_tokens.EMAIL),
    (r"url|web ?(?:site|address)", phi_tokens.URL),
    (r"cc contact info|contact info", phi_tokens.CONTACT),
    # "Age over 90 ".
    (r"age over", phi_tokens.AGE),
    # Record, license and document numbers.
    (
        r"medical record number|md number|unit number|social security number|serial number|"
        r"job number|provider number|numeric identifier|clip number|"
        r"(?:account|license|record|device|health ?plan) number",
        phi_tokens.ID,
    ),
    # Places and organizations.
    (
        r"location|street address|apartment address|state|country|zip|city|town|"
        r"company|university|college|po box",
        phi_tokens.LOCATION,
    ),
    # Dates: "Month (only) 123", "Year (4 digits) 123", "Month/Day 1", "Month/Day/Year 2",
    # "Date range (1) 1", "Day Month 1", "Holiday 12".
    (r"month|year|day|date|holiday", phi_tokens.DATE),
    # Shifted dates as MIMIC prints them: "2101-10-20", "10-20", "2101-10", "3/14", "2101".
    (r"\d{1,4}(?:[-/]\d{1,4}){1,2}$|\d{4}$", phi_tokens.DATE),
    # People: "Last Name (NamePattern1) 1", "First Name8 (NamePattern2) 2", "Known lastname 3",
    # "Doctor First Name 12", "Name (NI) 1", "Name6 (MD) 1", "Name Initial (PRE) 1",
    # "Initials (NamePattern4) 1", "Female First Name (un) 1", "Attending Info 1", "Dictator Info 1".
    (
        r"(?:last|first) name|known (?:last|first) ?name|doctor (?:first|last) name|name|initials?\b|"
        r"(?:female|male) first name|attending info|dictator info",
        phi_tokens.NAME,
    ),
)
_MIMIC_RULES = tuple((re.compile(pattern, re.IGNORECASE), token) for pattern, token in _MIMIC_TABLE)
_MIMIC_PLACEHOLDER = re.compile(r"\[\*\*(.*?)\*\*\]")


def mimic_placeholder_token(content: str) -> str:
    """The typed token for the text between `[**` and `**]`; [PHI] when the kind is not recognized."""
    content = content.strip()
    for pattern, token in _MIMIC_RULES:
        if pattern.match(content):
            return token
    return phi_tokens.OTHER


def replace_mimic_placeholders(text: str) -> tuple[str, dict[str, int]]:
    """Replace every MIMIC `[**...**]` placeholder (the empty `[****]` too) with its typed token.

    Returns the new text and how many placeholders became each token (tokens that occurred only).
    """
    counts: Counter[str] = Counter()

    def substitute(match: re.Match[str]) -> str:
        token = mimic_placeholder_token(match.group(1))
        counts[token] += 1
        return token

    return _MIMIC_PLACEHOLDER.sub(substitute, text), dict(counts)
