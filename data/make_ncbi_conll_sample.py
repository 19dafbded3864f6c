"""Rebuilds ``sample/ncbi_disease_conll/``: the first sentences of the NCBI-disease CoNLL files.

Each of ``train.tsv``, ``devel.tsv`` and ``test.tsv`` is copied byte for byte up to and including the
blank line that ends its N-th sentence, so the sample has the source's exact format (``TOKEN<TAB>TAG``
lines, a blank line after every sentence, the last one included) and is the same on every run.

Usage: python data/make_ncbi_conll_sample.py SHARED_DATA_DIR/ncbi_disease/conll
       [--out data/sample/ncbi_disease_conll] [--train 400] [--devel 100] [--test 100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def first_sentences(source: Path, out: Path, count: int) -> int:
    """Copies the lines of `source` up to the blank line ending sentence `count`; returns the number of
    sentences copied. Raises ValueError when the file holds fewer."""
    kept: list[bytes] = []
    sentences = 0
    in_sentence = False
    with source.open("rb") as stream:
        for line in stream:
            if sentences == count:
                break
            kept.append(line)
            if line.strip():
                in_sentence = True
            elif in_sentence:
                sentences += 1
                in_sentence = False
    if sentences < count:
        raise ValueError(f"{source} holds {sentences} blank-line-ended sentences, fewer than {count}")
    out.write_bytes(b"".join(kept))
    return sentences


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="the folder of train.tsv, devel.tsv and test.tsv")
    parser.add_argument("--out", type=Path, default=HERE / "sample" / "ncbi_disease_conll")
    parser.add_argument("--train", type=int, default=400, help="sentences of train.tsv")
    parser.add_argument("--devel", type=int, default=100, help="sentences of devel.tsv")
    parser.add_argument("--test", type=int, default=100, help="sentences of test.tsv")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "devel", "test"):
        count = first_sentences(args.source / f"{split}.tsv", args.out / f"{split}.tsv", getattr(args, split))
        print(f"{split}: {count} sentences")


if __name__ == "__main__":
    main()
