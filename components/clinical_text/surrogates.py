"""Realistic surrogates for identifiers, consistent within a patient.

Typed tokens (`[NAME]`) are the scrubber's default; some pretraining wants text that keeps its shape.
Here each identifier is replaced by an invented value of its kind, chosen by a keyed hash of the
secret key, the patient and the value, so the same name maps to the same surrogate in every note of a
patient and to different ones across patients. Dates move by one offset per patient (so intervals
survive), in the format they were written in; a date element that cannot be shifted (a holiday, a
month alone) becomes `[DATE]`. Numbers keep their layout with every digit replaced. Ages over 89
become 90, the aggregate Safe Harbor allows.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re

from components.clinical_text import lexicon, phi_tokens

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")  # fmt: skip
_NUMERIC = re.compile(r"^(?P<m>\d{1,2})(?P<s>[/-])(?P<d>\d{1,2})(?:(?P=s)(?P<y>\d{4}|\d{2}))?$")
_ISO = re.compile(r"^(?P<y>\d{4})(?P<s>[-/.])(?P<m>\d{1,2})(?P=s)(?P<d>\d{1,2})$")
_SPELLED = re.compile(r"^(?P<month>[A-Za-z]{3,9})\.?[ ](?P<d>\d{1,2})(?:st|nd|rd|th)?(?:,?[ ](?P<y>\d{4}))?$")


@functools.lru_cache(maxsize=1)
def _pools() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    words = lexicon.load()
    usable = lambda values: tuple(sorted(v for v in values if v not in words.common and v.isalpha()))  # noqa: E731
    return usable(words.first_names), usable(words.last_names), usable(words.places)


def _like(value: str, model: str) -> str:
    """`value` in the letter case of `model`."""
    if model.isupper():
        return value.upper()
    if model.islower():
        return value.lower()
    return value.title()


class Surrogates:
    """Surrogate values for one patient; `replace(original, kind)` gives the text to put in its place."""

    def __init__(self, key: str, patient: str, max_shift_days: int) -> None:
        self._seed = f"{key}\x00{patient}\x00"
        offset = self._number("date offset") % (2 * max_shift_days) - max_shift_days
        self.shift = datetime.timedelta(days=offset if offset < 0 else offset + 1)

    def _number(self, value: str) -> int:
        digest = hashlib.blake2b((self._seed + value).encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def _pick(self, pool: tuple[str, ...], value: str) -> str:
        return pool[self._number(value) % len(pool)]

    def replace(self, original: str, kind: str) -> str:
        key = " ".join(original.lower().split())
        first, last, places = _pools()
        if kind == "name":
            parts = original.split()
            surname = self._pick(last, key + "\x00last")
            name = surname if len(parts) < 2 else f"{self._pick(first, key + chr(0) + 'first')} {surname}"
            return _like(name, original)
        if kind in ("location", "hospital"):
            place = self._pick(places, key)
            return _like(place if kind == "location" else f"{place} Hospital", original)
        if kind == "date":
            return self._date(original.strip())
        if kind == "age":
            return "90"
        if kind == "email":
            return f"contact{self._number(key) % 10_000}@example.org"
        if kind == "url":
            return f"https://example.org/{self._number(key) % 100_000}"
        if any(char.isdigit() for char in original):
            digits = iter(str(self._number(key)).zfill(20) * 2)
            return "".join(next(digits) if char.isdigit() else char for char in original)
        return phi_tokens.OTHER

    def _date(self, text: str) -> str:
        try:
            if match := _NUMERIC.match(text):
                year = match["y"]
                full = (
                    int(year) + (1900 if len(year) == 2 and int(year) > 30 else 2000)
                    if year and len(year) == 2
                    else int(year or 2000)
                )
                day = datetime.date(full, int(match["m"]), int(match["d"])) + self.shift
                sep = match["s"]
                out = f"{day.month:0{len(match['m'])}d}{sep}{day.day:0{len(match['d'])}d}"
                if year:
                    out += sep + (f"{day.year % 100:02d}" if len(year) == 2 else str(day.year))
                return out
            if match := _ISO.match(text):
                day = datetime.date(int(match["y"]), int(match["m"]), int(match["d"])) + self.shift
                sep = match["s"]
                return f"{day.year}{sep}{day.month:02d}{sep}{day.day:02d}"
            if (match := _SPELLED.match(text)) and (month := _month(match["month"])):
                day = datetime.date(int(match["y"] or 2000), month, int(match["d"])) + self.shift
                name = _like(_MONTHS[day.month - 1], match["month"])
                return f"{name} {day.day}" + (f", {day.year}" if match["y"] else "")
        except ValueError:
            pass
        return phi_tokens.DATE


def _month(word: str) -> int:
    word = word.lower()
    for number, name in enumerate(_MONTHS, start=1):
        if name.startswith(word[:3]) and name.startswith(word.rstrip(".")):
            return number
    return 0
