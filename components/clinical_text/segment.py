"""Sentence segmentation for clinical notes, feeding ALBERT's sentence-order pairs.

Input is normalized note text (NFKC, ``\\n`` line ends, one blank line between paragraphs). The output
is a list of character spans that, stripped of surrounding whitespace, cover every non-whitespace
character exactly once, so no text is lost between consecutive sentences.

Why not PyRuSH (1.0.13, the clinical segmenter the issue suggested). Its rules do ship, but as a
top-level ``conf/rush_rules.tsv`` in site-packages, outside the package; ``RuSH()`` defaults to no
rules and returns each note as one sentence. With the shipped rules, on the 263 distinct notes of
``data/sample/mtsamples_sample.csv`` it ran at about 9 notes/s (this module: about 3,000 on the same
machine), split mid-sentence after dosing abbreviations and "i.e." before lowercase words (8 times,
e.g. "p.r.n. | acetaminophen", "q.i.d. | for"), did not start a sentence at 12 of 2,421 line-start
headers, and dropped trailing characters from its spans ("Sincerely," lost its comma in 4 notes),
which breaks the covering guarantee above. This segmenter writes its own rules for these notes:

1. A blank line always ends a sentence.
2. A single line break ends a sentence, so headers, list items and "Label: value" lines each start
   one, unless the next line starts with ``,;)`` or a lowercase letter, after any opening bracket or
   quote (a wrapped line), or the line ends with a title abbreviation such as "Dr." and the next
   line is no header or list item. Hard-wrapped prose whose next line starts with a capital is
   split there; for clinical notes, which are mostly telegraphic, that errs the safe way.
3. Within a line, ``.``, ``!`` or ``?`` (then any closing quotes or brackets) followed by whitespace
   ends a sentence when the next character is not a lowercase letter, except
   - after a title or Latin abbreviation (``Dr.``, ``Mrs.``, ``St.``, ``vs.``, ``e.g.``, ``i.e.``,
     ``approx.``): never;
   - after a list marker (``1.``, ``A.`` or ``iv.`` at line start; a one- or two-digit number such
     as ``2.`` after a sentence end; ``1.`` after a colon when a ``2.`` item follows on the line):
     never, the item's text belongs to it. Otherwise a number after a colon is a value
     ("Pulse: 64. Respirations: 20.");
   - after a clinical abbreviation (``b.i.d.``, ``q.4h.``, ``p.o.``, ``p.r.n.``, ``pt.``, ``No.``,
     units, any dotted lowercase run): only before an uppercase letter or an inline list marker.
     So "Tylenol 650 mg q.4h. She will return." is two sentences; "No. 3" and "p.o. 2 tabs" stay whole.
Decimals (``2.5 mg``), times (``10:30``) and vertebral levels (``L4-5``, ``C5-C6``) contain no
punctuation followed by whitespace, so they are never split.

The rules live in this module rather than a data file so that they travel with the package without
packaging configuration. Nothing here logs or raises with note text.
"""

from __future__ import annotations

import re

# Abbreviations after which a sentence never ends on the same line: they always precede a name,
# number or example.
_TITLE_ABBREVIATIONS = frozenset(
    {"dr.", "drs.", "mr.", "mrs.", "ms.", "prof.", "st.", "vs.", "e.g.", "i.e.", "approx.", "fig.", "cf."}
)

# Abbreviations that may end a sentence: a boundary only when an uppercase letter or a list item follows.
_CLINICAL_ABBREVIATIONS = frozenset(
    {
        "pt.",
        "pts.",
        "no.",
        "nos.",
        "etc.",
        "bid.",
        "tid.",
        "qid.",
        "qd.",
        "qhs.",
        "prn.",
        "po.",
        "ft.",
        "lb.",
        "lbs.",
        "oz.",
        "temp.",
        "wt.",
        "ht.",
        "hr.",
        "hrs.",
        "min.",
        "yr.",
        "yrs.",
        "mo.",
        "wk.",
        "wks.",
    }
)

# Dotted runs such as b.i.d., q.4h., p.r.n., a.m., u.s., m.d. (matched lowercased), and q4h.
_DOTTED_ABBREVIATION = re.compile(r"(?=.*[a-z])(?:[a-z0-9]{1,3}\.){2,}|q\d{1,2}(?:h|hr|hrs)\.")

# A sentence-final mark: a whole whitespace-delimited token ending in . ! or ?, closing quotes or
# brackets, then whitespace.
_END_MARK = re.compile(r"(?<!\S)(?P<token>\S*?)(?P<punct>[.!?]+)(?P<close>[\"'”’)\]]*)(?P<ws>\s+)")

_LINE_BREAKS = re.compile(r"\n(?:[^\S\n]*\n)*")
_LINE_START_MARKER = re.compile(r"(?:\d{1,3}|[A-Za-z]|[ivxlIVXL]{1,6})\.")
_INLINE_LIST_MARKER = re.compile(r"\d{1,2}[.)]\s")
_SECOND_ITEM = re.compile(r"[.!?;][\"'”’)\]]*\s+2\.\s")
_LETTER_MARKER = re.compile(r"[a-z][.)]\s")
# What opens a line of its own: a section header ("PLAN:") or a list item ("1.", "a)", "-", "*").
_LINE_OPENER = re.compile(r"[A-Z][A-Z0-9 ,/&()'-]*[A-Z)]:|(?:\d{1,3}|[A-Za-z]|[ivxlIVXL]{1,6})[.)]\s|[-*•]\s")
_LAST_TOKEN = re.compile(r"(\S+)[^\S\n]*\Z")
_OPENERS = "([\"'“‘"
_CONTINUATION_START = ",;)"


def segment_spans(text: str) -> list[tuple[int, int]]:
    """Returns the ``(start, end)`` character spans of the sentences of ``text``, in order."""
    cuts = sorted(set(_line_break_cuts(text)) | set(_end_mark_cuts(text)))
    spans = []
    start = 0
    for end in [*cuts, len(text)]:
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            left = start + len(piece) - len(piece.lstrip())
            spans.append((left, left + len(stripped)))
        start = end
    return spans


def segment_sentences(text: str) -> list[str]:
    """Returns the sentences of ``text`` as strings, stripped of surrounding whitespace."""
    return [text[start:end] for start, end in segment_spans(text)]


def _line_break_cuts(text: str) -> list[int]:
    """Positions of line breaks that end a sentence (rules 1 and 2)."""
    cuts = []
    for match in _LINE_BREAKS.finditer(text):
        if match.group().count("\n") > 1:
            cuts.append(match.start())
            continue
        nxt = _skip_spaces(text, match.end())
        if nxt == len(text):
            continue
        if _continues_line(text, nxt):
            continue
        if _ends_with_title(text, match.start()) and not _LINE_OPENER.match(text, nxt):
            continue
        cuts.append(match.start())
    return cuts


def _continues_line(text: str, nxt: int) -> bool:
    """True when the line starting at ``nxt`` continues the previous line's sentence."""
    char = text[nxt]
    if char in _CONTINUATION_START:
        return True
    if char in _OPENERS and nxt + 1 < len(text):
        return text[nxt + 1].islower()
    return char.islower() and not _LETTER_MARKER.match(text, nxt)


def _ends_with_title(text: str, line_end: int) -> bool:
    """True when the line ending at ``line_end`` ends with a title abbreviation such as "Dr."."""
    last = _LAST_TOKEN.search(text, max(0, line_end - 40), line_end)
    return last is not None and _normalized(last.group(1)) in _TITLE_ABBREVIATIONS


def _end_mark_cuts(text: str) -> list[int]:
    """Positions right after sentence-final punctuation that ends a sentence within a line (rule 3)."""
    cuts = []
    for match in _END_MARK.finditer(text):
        if "\n" in match.group("ws") or match.end() == len(text):
            continue
        if _ends_sentence(text, match):
            cuts.append(match.end("close"))
    return cuts


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    """Decides whether one end mark followed by more text on the same line ends a sentence."""
    nxt = match.end()
    char = text[nxt]
    if char in _OPENERS and nxt + 1 < len(text):
        char = text[nxt + 1]
    if char.islower():
        return False
    if match.group("punct") != ".":
        return True
    word = _normalized(match.group("token") + ".")
    if word in _TITLE_ABBREVIATIONS or _is_list_marker(text, match):
        return False
    if word in _CLINICAL_ABBREVIATIONS or _DOTTED_ABBREVIATION.fullmatch(word):
        return char.isupper() or bool(_INLINE_LIST_MARKER.match(text, nxt))
    return True


def _is_list_marker(text: str, match: re.Match[str]) -> bool:
    """True for the marker of a list item (see rule 3 in the module docstring)."""
    token = match.group("token")
    if match.group("close"):
        return False
    start = match.start("token")
    before = start
    while before > 0 and text[before - 1] in " \t":
        before -= 1
    at_line_start = before == 0 or text[before - 1] == "\n"
    if at_line_start:
        return bool(_LINE_START_MARKER.fullmatch(token + "."))
    if not token.isdigit() or len(token) > 2:
        return False
    if text[before - 1] in ".!?;":
        return True
    return text[before - 1] == ":" and token == "1" and _has_second_item(text, match.end())


def _has_second_item(text: str, index: int) -> bool:
    """True when an inline item ``2.`` follows on the line from ``index``, so a ``1.`` opened a list."""
    line_end = text.find("\n", index)
    return _SECOND_ITEM.search(text, index, len(text) if line_end < 0 else line_end) is not None


def _normalized(token: str) -> str:
    """Lowercases a token and drops the opening brackets and quotes before it."""
    return token.lstrip(_OPENERS).lower()


def _skip_spaces(text: str, index: int) -> int:
    """Returns the first index at or after ``index`` that is not a space or tab."""
    while index < len(text) and text[index] in " \t":
        index += 1
    return index
