"""Recall, precision and speed of the residual-PHI scrubber on synthetic notes.

Span-level, as `tests.components.phi_synth.score` defines it: a planted identifier is found when one
finding covers all of it; a finding is correct when it overlaps a planted identifier. Distractors are
clinical numbers (doses, blood pressures, lab values, vertebral levels...) that no finding may touch.

    python bench/phi_scrubber.py --notes 2000 --seed 0
    python bench/phi_scrubber.py --config '{"titled_names": false}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.clinical_text.scrub import Scrubber, ScrubberConfig  # noqa: E402
from tests.components.phi_synth import PHI_KINDS, make_phi_corpus, score  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=1000, help="synthetic notes to generate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus")
    parser.add_argument("--repeats", type=int, default=3, help="timing runs; the fastest is reported")
    parser.add_argument("--config", default="{}", help="ScrubberConfig as a JSON object")
    args = parser.parse_args(argv)

    scrubber = Scrubber(ScrubberConfig.from_dict(json.loads(args.config)))
    notes = make_phi_corpus(args.notes, seed=args.seed)
    result = score(notes, scrubber.find)

    print(f"{args.notes} synthetic notes, seed {args.seed}")
    print(f"{'kind':<8} {'planted':>8} {'found':>8} {'recall':>8} {'findings':>9} {'precision':>10}")
    for kind in PHI_KINDS:
        planted = result.planted.get(kind, 0)
        recall = f"{result.recall(kind):.4f}" if planted else "-"
        print(
            f"{kind:<8} {planted:>8} {result.found.get(kind, 0):>8} {recall:>8} "
            f"{result.findings.get(kind, 0):>9} {result.precision(kind):>10.4f}"
        )
    extra = sorted(set(result.findings) - set(PHI_KINDS))
    for kind in extra:
        print(f"{kind:<8} {'':>8} {'':>8} {'':>8} {result.findings[kind]:>9} {result.precision(kind):>10.4f}")
    print(f"overall precision {result.precision():.4f} over {sum(result.findings.values())} findings")
    print(f"distractors touched: {sum(result.distractors_hit.values())} {result.distractors_hit or ''}")

    characters = sum(len(note.text) for note in notes)
    best = float("inf")
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        for note in notes:
            scrubber.scrub(note.text)
        best = min(best, time.perf_counter() - start)
    print(
        f"speed: {args.notes / best:.0f} notes/s, {characters / best / 1e6:.2f} MB/s "
        f"(mean note {characters / args.notes:.0f} characters, best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
