"""Rebuilds the project's bundled sample corpus from the public corpora in ``shared/data``.

The sample is what the default pipeline run and the tests read, so it must be small, public and
reproducible:

- ``sample/mtsamples_sample.csv``: MTSamples notes (the columns of the source CSV). Up to
  ``--per-specialty`` distinct notes are taken from each specialty, picked by a stable hash of
  ``sample_id``; then every row of the source that carries a picked ``sample_id`` is kept, so that a
  note listed under several specialties keeps all of its labels (and the duplicate rows that the
  ingestion must collapse).
- ``sample/ncbi_disease_sample.jsonl``: NCBI-disease abstracts (title and abstract joined), one JSON
  object per line with ``id``, ``text``, ``split`` (the corpus's own train/devel/test) and
  ``entities``: the annotated disease mentions as character spans of ``text`` (``start``, ``end``,
  ``type``: SpecificDisease, DiseaseClass, CompositeMention or Modifier), for token classification.

Usage: python data/make_sample.py SHARED_DATA_DIR [--per-specialty 8] [--abstracts 120]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _stable_key(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def sample_mtsamples(source: Path, out: Path, per_specialty: int) -> tuple[int, int]:
    csv.field_size_limit(sys.maxsize)
    with source.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = list(reader)
    ids_by_specialty: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["transcription"].strip():
            ids_by_specialty[row["medical_specialty"]].add(row["sample_id"])
    picked: set[str] = set()
    for specialty in sorted(ids_by_specialty):
        ranked = sorted(ids_by_specialty[specialty], key=_stable_key)
        picked.update(ranked[:per_specialty])
    kept = [row for row in rows if row["sample_id"] in picked]
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    return len(picked), len(kept)


def sample_ncbi(source_dir: Path, out: Path, count: int) -> int:
    files = {
        "train": "NCBItrainset_corpus.txt",
        "devel": "NCBIdevelopset_corpus.txt",
        "test": "NCBItestset_corpus.txt",
    }
    docs: dict[str, dict] = {}
    for split, name in files.items():
        title: dict[str, str] = {}
        for number, line in enumerate((source_dir / name).read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split("|", 2)
            if len(parts) == 3 and parts[1] == "t":
                title[parts[0]] = parts[2]
            elif len(parts) == 3 and parts[1] == "a":
                text = f"{title[parts[0]]}\n\n{parts[2]}"
                docs[parts[0]] = {"id": parts[0], "text": text, "split": split, "entities": []}
            elif line.count("\t") >= 4:
                docs[line.split("\t")[0]]["entities"].append(
                    _ncbi_mention(line, docs, title, f"{name} line {number}")
                )
    ordered = sorted(docs.values(), key=lambda d: _stable_key(d["id"]))
    chosen = sorted(ordered[:count], key=lambda d: d["id"])
    with out.open("w", encoding="utf-8") as f:
        for doc in chosen:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return len(chosen)


def _ncbi_mention(line: str, docs: dict[str, dict], title: dict[str, str], where: str) -> dict:
    """One mention line (PMID, start, end, mention, type, concept) as a span of our joined text.

    The corpus counts offsets over title + " " + abstract; the sample joins them with a blank line,
    so mentions in the abstract move one character right. Each span is checked against its mention
    (whitespace collapsed: a few mention strings of the corpus carry an extra trailing space).
    """
    pmid, start, end, mention, kind = line.split("\t")[:5]
    start, end = int(start), int(end)
    if start > len(title[pmid]):
        start, end = start + 1, end + 1
    if " ".join(docs[pmid]["text"][start:end].split()) != " ".join(mention.split()):
        raise ValueError(f"{where}: the span {start}-{end} does not hold its mention")
    return {"start": start, "end": end, "type": kind}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("shared_data", type=Path, help="the shared/data folder (mtsamples/, ncbi_disease/)")
    parser.add_argument("--per-specialty", type=int, default=8)
    parser.add_argument("--abstracts", type=int, default=120)
    args = parser.parse_args(argv)
    out_dir = HERE / "sample"
    out_dir.mkdir(exist_ok=True)
    notes, rows = sample_mtsamples(
        args.shared_data / "mtsamples" / "mtsamples.csv", out_dir / "mtsamples_sample.csv", args.per_specialty
    )
    abstracts = sample_ncbi(
        args.shared_data / "ncbi_disease" / "original", out_dir / "ncbi_disease_sample.jsonl", args.abstracts
    )
    print(f"mtsamples: {notes} notes in {rows} rows; ncbi_disease: {abstracts} abstracts")


if __name__ == "__main__":
    main()
