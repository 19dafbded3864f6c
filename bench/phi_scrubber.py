"""De-identification figures: recall per kind, precision, over-scrubbing, utility and speed.

Span-level, as `tests.components.phi_synth.score` defines it: a planted identifier is found when one
finding covers all of it; a finding is correct when it overlaps a planted identifier. Distractors are
clinical words and numbers (doses, scores, eponyms such as "Foley catheter") that no finding may touch.

Utility: the share of disease mentions of NCBI-disease that any finding touches, and the share of
drug doses (`81 mg`) and the drug name before each in MTSamples. Both read `data/sample` and, when
present, the full files under `../shared/data`. `--i2b2 DIR` scores any corpus in the i2b2/n2c2 2014
XML format (recall per TYPE, precision, findings per note). Speed is notes/s on one core.

    python bench/phi_scrubber.py --notes 2000 --seed 0
    python bench/phi_scrubber.py --config '{"years": true}' --i2b2 PATH/TO/XML_FOLDER
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.clinical_example_gen.i2b2_reader import parse_i2b2  # noqa: E402
from components.clinical_text.normalize import normalize_text  # noqa: E402
from components.clinical_text.scrub import Scrubber, ScrubberConfig  # noqa: E402
from tests.components.phi_synth import PHI_KINDS, make_phi_corpus, score  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
_DOSE = re.compile(r"\b([A-Za-z][A-Za-z-]{3,})\s+(\d+(?:\.\d+)?\s?(?:mg|mcg|mL|units|g)\b)")


def _touched(findings, start: int, end: int) -> bool:
    return any(f.start < end and start < f.end for f in findings)


def _ncbi_utility(scrubber: Scrubber) -> str:
    sample = ROOT / "data" / "sample" / "ncbi_disease_sample.jsonl"
    mentions = touched = notes = 0
    with sample.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            findings = scrubber.find(record["text"])
            notes += 1
            for entity in record["entities"]:
                mentions += 1
                touched += _touched(findings, entity["start"], entity["end"])
    original = (
        sorted((SHARED / "ncbi_disease" / "original").glob("NCBI*_corpus.txt")) if SHARED.exists() else []
    )
    for path in original:
        documents: dict[str, list[str]] = {}
        spans: dict[str, list[tuple[int, int]]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("|", 2)
            if len(parts) == 3 and parts[1] in ("t", "a"):
                documents.setdefault(parts[0], []).append(parts[2])
            elif line.count("\t") >= 4:
                pmid, start, end = line.split("\t")[:3]
                spans.setdefault(pmid, []).append((int(start), int(end)))
        for pmid, pieces in documents.items():
            findings = scrubber.find(" ".join(pieces))
            notes += 1
            for start, end in spans.get(pmid, []):
                mentions += 1
                touched += _touched(findings, start, end)
    share = touched / max(mentions, 1)
    return (
        f"NCBI-disease: {touched} of {mentions} disease mentions touched ({share:.2%}) in {notes} abstracts"
    )


def _mtsamples_utility(scrubber: Scrubber) -> str:
    full = SHARED / "mtsamples" / "mtsamples.csv"
    path = full if full.exists() else ROOT / "data" / "sample" / "mtsamples_sample.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        notes = {row["sample_id"]: row["transcription"] for row in csv.DictReader(handle)}
    drugs = doses = drugs_hit = doses_hit = 0
    for text in map(normalize_text, notes.values()):
        findings = scrubber.find(text)
        for match in _DOSE.finditer(text):
            drugs, doses = drugs + 1, doses + 1
            drugs_hit += _touched(findings, *match.span(1))
            doses_hit += _touched(findings, *match.span(2))
    return (
        f"MTSamples ({path.name}, {len(notes)} notes): drug names touched {drugs_hit}/{drugs} "
        f"({drugs_hit / max(drugs, 1):.2%}), doses touched {doses_hit}/{doses} "
        f"({doses_hit / max(doses, 1):.2%})"
    )


def _i2b2(scrubber: Scrubber, folder: Path) -> None:
    planted, found = Counter(), Counter()
    findings = correct = notes = 0
    for path in sorted(folder.rglob("*.xml")):
        parsed = parse_i2b2(path.read_bytes())
        if isinstance(parsed, str):
            print(f"  skipped {path.name}: {parsed}")
            continue
        text, spans = parsed
        notes += 1
        results = scrubber.find(text)
        for span in spans:
            planted[span.type] += 1
            found[span.type] += any(f.start <= span.start and span.end <= f.end for f in results)
        findings += len(results)
        correct += sum(any(_touched([f], s.start, s.end) for s in spans) for f in results)
    print(f"i2b2 corpus {folder}: {notes} notes")
    for kind in sorted(planted):
        print(f"  {kind:<14} {planted[kind]:>6} recall {found[kind] / planted[kind]:.4f}")
    total = sum(planted.values())
    print(f"  overall recall {sum(found.values()) / max(total, 1):.4f}; "
          f"precision {correct / max(findings, 1):.4f}; "
          f"false findings per note {(findings - correct) / max(notes, 1):.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=1000, help="synthetic notes to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs; the fastest is reported")
    parser.add_argument("--config", default="{}", help="ScrubberConfig as a JSON object")
    parser.add_argument("--i2b2", type=Path, help="a folder of i2b2/n2c2 2014 de-id XML files to score")
    args = parser.parse_args(argv)

    scrubber = Scrubber(ScrubberConfig.from_dict(json.loads(args.config)))
    notes = make_phi_corpus(args.notes, seed=args.seed)
    result = score(notes, scrubber.find)

    print(f"{args.notes} synthetic notes, seed {args.seed}")
    print(f"{'kind':<9} {'planted':>8} {'found':>8} {'recall':>8} {'findings':>9} {'precision':>10}")
    for kind in PHI_KINDS:
        planted = result.planted.get(kind, 0)
        recall = f"{result.recall(kind):.4f}" if planted else "-"
        print(
            f"{kind:<9} {planted:>8} {result.found.get(kind, 0):>8} {recall:>8} "
            f"{result.findings.get(kind, 0):>9} {result.precision(kind):>10.4f}"
        )
    total = sum(result.planted.values())
    print(f"overall recall {sum(result.found.values()) / total:.4f} of {total} planted identifiers")
    print(f"overall precision {result.precision():.4f} over {sum(result.findings.values())} findings")
    print(f"distractors touched: {sum(result.distractors_hit.values())} {result.distractors_hit or ''}")
    scrubbed = outside = 0
    for note in notes:
        inside = set()
        for span in note.phi:
            inside.update(range(span.start, span.end))
        for finding in scrubber.find(note.text):
            scrubbed += finding.end - finding.start
            outside += sum(i not in inside for i in range(finding.start, finding.end))
    print(f"scrubbed characters that are not identifiers: {outside / max(scrubbed, 1):.2%} of {scrubbed}")
    print(_ncbi_utility(scrubber))
    print(_mtsamples_utility(scrubber))
    if args.i2b2:
        _i2b2(scrubber, args.i2b2)

    characters = sum(len(note.text) for note in notes)
    best = float("inf")
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        for note in notes:
            scrubber.scrub(note.text)
        best = min(best, time.perf_counter() - start)
    print(
        f"speed: {args.notes / best:.0f} notes/s, {characters / best / 1e6:.2f} MB/s on one core "
        f"(mean note {characters / args.notes:.0f} characters, best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
