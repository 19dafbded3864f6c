"""Converts PubMedQA's expert-labelled set (PQA-L) to JSON Lines for the ExampleGen, whole or sampled.

Each line is one PMID: ``id`` (the PMID), ``question`` (QUESTION), ``context`` (CONTEXTS, the list of
abstract sections, as is), ``label`` (final_decision: yes, no or maybe) and ``split``. The split is
"test" for the 500 official test PMIDs (``test_ground_truth.json``); the other 500 are "train",
except about one in ten, "dev", chosen by the SHA-256 of the PMID, so that the choice is the same on
every machine and run. Lines are in numeric PMID order.

Without counts the whole set is written (what benchmarks read). ``--train N`` keeps the first N
train/dev PMIDs by numeric PMID, ``--test N`` the first N test PMIDs; the bundled sample is

    python data/make_pubmedqa_sample.py SHARED_DATA_DIR/pubmedqa data/sample/pubmedqa_sample.jsonl \\
        --train 160 --test 40

The ExampleGen reads it as jsonl with reader_config ``{"id_key": "id", "text_key": "question",
"text_b_key": "context", "labels_key": "label", "split_key": "split"}`` and split_source
``{"field": {"train": ["train"], "eval": ["dev"], "test": ["test"]}}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

LABELS = ("yes", "no", "maybe")
#: One train/dev PMID in DEV_EVERY is dev.
DEV_EVERY = 10


def split_of(pmid: str, test_ids: set[str]) -> str:
    """The PMID's split: "test" if official test, else "dev" for one in `DEV_EVERY` by hash, else "train"."""
    if pmid in test_ids:
        return "test"
    digest = hashlib.sha256(pmid.encode("utf-8")).digest()
    return "dev" if int.from_bytes(digest[:8], "big") % DEV_EVERY == 0 else "train"


def convert(source: Path, train: int | None = None, test: int | None = None) -> list[dict[str, Any]]:
    """The lines for the PubMedQA folder `source`: every PMID, or the first `train` train/dev and `test`
    test PMIDs (None: all of that group). Raises ValueError on a label or a test PMID it cannot place."""
    instances = json.loads((source / "ori_pqal.json").read_text(encoding="utf-8"))
    test_ids = set(json.loads((source / "test_ground_truth.json").read_text(encoding="utf-8")))
    if unknown := sorted(test_ids - set(instances)):
        raise ValueError(f"{len(unknown)} test PMIDs are not in ori_pqal.json, e.g. {unknown[0]}")
    rows: dict[str, list[dict[str, Any]]] = {"test": [], "other": []}
    for pmid in sorted(instances, key=int):
        instance = instances[pmid]
        label = instance["final_decision"]
        if label not in LABELS:
            raise ValueError(f"PMID {pmid}: final_decision {label!r} is not one of {LABELS}")
        split = split_of(pmid, test_ids)
        line = {
            "id": pmid,
            "question": instance["QUESTION"],
            "context": instance["CONTEXTS"],
            "label": label,
            "split": split,
        }
        rows["test" if split == "test" else "other"].append(line)
    kept = rows["other"][:train] + rows["test"][:test]
    return sorted(kept, key=lambda line: int(line["id"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="the folder of ori_pqal.json and test_ground_truth.json")
    parser.add_argument("out", type=Path, help="the JSON Lines file to write")
    parser.add_argument("--train", type=int, help="first train/dev PMIDs to keep (default: all)")
    parser.add_argument("--test", type=int, help="first test PMIDs to keep (default: all)")
    args = parser.parse_args(argv)
    for flag in ("train", "test"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            parser.error(f"--{flag} must not be negative")
    lines = convert(args.source, args.train, args.test)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="\n") as out:
        out.writelines(json.dumps(line) + "\n" for line in lines)
    counts = {split: sum(line["split"] == split for line in lines) for split in ("train", "dev", "test")}
    print(f"{args.out}: {len(lines)} PMIDs ({', '.join(f'{k} {v}' for k, v in counts.items())})")


if __name__ == "__main__":
    main()
