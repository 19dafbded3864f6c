"""The four tasks of `bench/quality.py`, read from the shared data folder and split as the project splits.

    mtsamples_multi    MTSamples notes, each with the set of specialties it is listed under (the rows
                       that share a `sample_id` are one note, their specialties its labels; two ids with
                       the same text are one note too, kept under the smaller id, as ingestion's
                       deduplication does). Split by `sample_id` with the ExampleGen's own rule,
                       `components.clinical_example_gen.split.split_index` over its default 8/1/1
                       train/eval/test ratios: the same sha256 bucket of the group id.
    mtsamples_single   the notes of mtsamples_multi that carry exactly one specialty, in the same splits
    ncbi_disease       NCBI-disease's official CoNLL files: train -> train, devel -> eval, test -> test;
                       one type, Disease, as BIO ids O=0, B-Disease=1, I-Disease=2
    pubmedqa           PubMedQA's expert-labelled set: question + the abstract's sections joined by a
                       space -> yes/no/maybe. Test: the PMIDs of test_ground_truth.json (the official
                       500); the others by the same sha256 bucket rule, train/eval 9/1.

Where the shared folder lacks a dataset, its bundled sample in data/sample is read instead (the same
files cut short, PubMedQA as one JSON line a PMID with its split), and `TaskData.source` says so.
Nothing here imports TensorFlow, Keras or scikit-learn.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.clinical_example_gen.split import DEFAULT_SPLITS, parse_splits, split_index

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "sample"
SPLITS = ("train", "eval", "test")

MULTI_LABEL, SINGLE_LABEL, PAIR, ENTITIES = "multi_label", "single_label", "pair", "entities"
ENTITY_TYPE = "Disease"
BIO_TAGS = ("O", f"B-{ENTITY_TYPE}", f"I-{ENTITY_TYPE}")
PUBMEDQA_LABELS = ("yes", "no", "maybe")
#: Train/eval ratios of the PubMedQA PMIDs outside the official test set (BLURB takes 450/50).
PUBMEDQA_SPLITS = parse_splits({"train": 9, "eval": 1})
NOTE_SPLITS = parse_splits(DEFAULT_SPLITS)
NCBI_FILES = {"train": "train.tsv", "eval": "devel.tsv", "test": "test.tsv"}


@dataclasses.dataclass(frozen=True)
class Example:
    """One scored unit of a classification task: a note, or a question with its passage (`text_b`)."""

    unit_id: str
    text: str
    labels: tuple[str, ...]
    text_b: str | None = None


@dataclasses.dataclass(frozen=True)
class Sentence:
    """One scored unit of the NER task: its words and their BIO ids."""

    words: tuple[str, ...]
    tags: tuple[int, ...]


@dataclasses.dataclass
class TaskData:
    """A task's units per split, its label names (class ids index them) and where they came from."""

    name: str
    kind: str
    label_names: list[str]
    splits: dict[str, list[Any]]
    source: str
    bundled: bool

    def counts(self) -> dict[str, int]:
        return {split: len(units) for split, units in self.splits.items()}

    def capped(self, caps: dict[str, int] | None) -> TaskData:
        """The same task with at most `caps[split]` units per split (the first ones: deterministic)."""
        if not caps:
            return self
        splits = {split: units[: caps.get(split, len(units))] for split, units in self.splits.items()}
        return dataclasses.replace(self, splits=splits)


@dataclasses.dataclass(frozen=True)
class Sources:
    """The file each dataset is read from, and whether it is the bundled sample."""

    mtsamples: Path
    ncbi_conll: Path
    pubmedqa: Path
    bundled: dict[str, bool]

    @property
    def any_bundled(self) -> bool:
        return any(self.bundled.values())


def find_sources(data_root: str | Path) -> Sources:
    """The shared data's files under `data_root`, each replaced by its bundled sample when missing."""
    root = Path(data_root)
    full = {
        "mtsamples": root / "mtsamples" / "mtsamples.csv",
        "ncbi_disease": root / "ncbi_disease" / "conll",
        "pubmedqa": root / "pubmedqa",
    }
    present = {
        "mtsamples": full["mtsamples"].is_file(),
        "ncbi_disease": all((full["ncbi_disease"] / name).is_file() for name in NCBI_FILES.values()),
        "pubmedqa": all(
            (full["pubmedqa"] / name).is_file() for name in ("ori_pqal.json", "test_ground_truth.json")
        ),
    }
    bundled = {name: not found for name, found in present.items()}
    return Sources(
        mtsamples=full["mtsamples"] if present["mtsamples"] else SAMPLES / "mtsamples_sample.csv",
        ncbi_conll=full["ncbi_disease"] if present["ncbi_disease"] else SAMPLES / "ncbi_disease_conll",
        pubmedqa=full["pubmedqa"] if present["pubmedqa"] else SAMPLES / "pubmedqa_sample.jsonl",
        bundled=bundled,
    )


def _relative(path: Path) -> str:
    """A path as the table prints it: relative to the repository when inside it, else its last parts."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(Path(*path.parts[-3:]))


# -- MTSamples ---------------------------------------------------------------------------------------


def read_mtsamples(path: Path) -> list[Example]:
    """One Example per note: rows grouped by `sample_id`, labels the sorted union of their specialties;
    notes with the same text merged under the smaller id (string order, as ingestion keeps the smallest
    note id). Rows with an empty transcription are left out, as ingestion rejects them."""
    csv.field_size_limit(1 << 26)
    texts: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            sample_id, text = row["sample_id"].strip(), row["transcription"]
            if not sample_id or not text.strip():
                continue
            texts.setdefault(sample_id, text)
            specialty = row["medical_specialty"].strip()
            labels.setdefault(sample_id, set()).update([specialty] if specialty else [])
    kept_by_text: dict[str, str] = {}
    for sample_id in sorted(texts):
        kept = kept_by_text.setdefault(texts[sample_id].strip(), sample_id)
        if kept != sample_id:
            labels[kept] |= labels.pop(sample_id)
    return [
        Example(sample_id, texts[sample_id], tuple(sorted(labels[sample_id])))
        for sample_id in sorted(kept_by_text.values())
    ]


def split_by_group(examples: Sequence[Example], splits=NOTE_SPLITS) -> dict[str, list[Example]]:
    """Examples per split by the ExampleGen's hash of their group (the unit id: `sample_id`, PMID)."""
    names = [name for name, _ in splits]
    parts: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for example in examples:
        parts[names[split_index(example.unit_id, splits)]].append(example)
    return parts


def mtsamples_tasks(sources: Sources) -> tuple[TaskData, TaskData]:
    """mtsamples_multi and mtsamples_single (see the module docstring)."""
    notes = read_mtsamples(sources.mtsamples)
    splits = split_by_group(notes)
    names = sorted({label for note in notes for label in note.labels})
    where = _relative(sources.mtsamples) if sources.bundled["mtsamples"] else "mtsamples/mtsamples.csv"
    split_rule = "split by sample_id (ExampleGen hash, train/eval/test 8/1/1)"
    multi = TaskData(
        "mtsamples_multi", MULTI_LABEL, names, splits, f"{where}; {split_rule}", sources.bundled["mtsamples"]
    )
    single_splits = {split: [n for n in units if len(n.labels) == 1] for split, units in splits.items()}
    single_names = sorted({n.labels[0] for units in single_splits.values() for n in units})
    single = TaskData(
        "mtsamples_single",
        SINGLE_LABEL,
        single_names,
        single_splits,
        f"{where}; notes with exactly one specialty; {split_rule}",
        sources.bundled["mtsamples"],
    )
    return multi, single


# -- NCBI-disease ------------------------------------------------------------------------------------


def read_conll(path: Path) -> list[Sentence]:
    """Sentences of a `TOKEN<TAB>TAG` file with a blank line after each; `-DOCSTART-` lines skipped."""
    tag_ids = {tag: index for index, tag in enumerate(BIO_TAGS)}
    sentences, words, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if words:
                    sentences.append(Sentence(tuple(words), tuple(tags)))
                    words, tags = [], []
                continue
            columns = line.split("\t")
            if len(columns) < 2 or columns[-1] not in tag_ids:
                raise ValueError(f"{path.name}:{number}: expected TOKEN<TAB>TAG with a tag of {BIO_TAGS}")
            words.append(columns[0])
            tags.append(tag_ids[columns[-1]])
    if words:
        sentences.append(Sentence(tuple(words), tuple(tags)))
    return sentences


def ncbi_task(sources: Sources) -> TaskData:
    splits = {split: read_conll(sources.ncbi_conll / name) for split, name in NCBI_FILES.items()}
    where = _relative(sources.ncbi_conll) if sources.bundled["ncbi_disease"] else "ncbi_disease/conll"
    return TaskData(
        "ncbi_disease",
        ENTITIES,
        list(BIO_TAGS),
        splits,
        f"{where}; official files: train, devel -> eval, test",
        sources.bundled["ncbi_disease"],
    )


# -- PubMedQA ----------------------------------------------------------------------------------------


def _pubmedqa_example(pmid: str, question: str, contexts: Sequence[str], label: str) -> Example:
    if label not in PUBMEDQA_LABELS:
        raise ValueError(f"PubMedQA {pmid}: label {label!r} is not one of {PUBMEDQA_LABELS}")
    return Example(pmid, question, (label,), " ".join(contexts))


def read_pubmedqa(path: Path) -> tuple[list[Example], set[str]]:
    """The labelled examples and the official test PMIDs: from `ori_pqal.json` and
    `test_ground_truth.json` in a folder, or from the bundled JSON-lines sample (its `split` field
    marks the official test PMIDs)."""
    if path.is_dir():
        with open(path / "ori_pqal.json", encoding="utf-8") as f:
            records = json.load(f)
        with open(path / "test_ground_truth.json", encoding="utf-8") as f:
            test = json.load(f)
        examples = [
            _pubmedqa_example(pmid, r["QUESTION"], r["CONTEXTS"], r["final_decision"])
            for pmid, r in sorted(records.items())
        ]
        disagree = [
            pmid
            for pmid, label in test.items()
            if pmid in records and records[pmid]["final_decision"] != label
        ]
        if disagree:
            raise ValueError(
                f"PubMedQA: {len(disagree)} test PMIDs whose ground truth differs from ori_pqal.json"
            )
        return examples, set(test)
    examples, test_ids = [], set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                examples.append(_pubmedqa_example(str(r["id"]), r["question"], r["context"], r["label"]))
                if r.get("split") == "test":
                    test_ids.add(str(r["id"]))
    return sorted(examples, key=lambda e: e.unit_id), test_ids


def split_pubmedqa(examples: Sequence[Example], test_ids: set[str]) -> dict[str, list[Example]]:
    """Test: exactly the official test PMIDs; the rest train/eval by the hash of the PMID."""
    rest = split_by_group([e for e in examples if e.unit_id not in test_ids], PUBMEDQA_SPLITS)
    return {
        "train": rest["train"],
        "eval": rest["eval"],
        "test": [e for e in examples if e.unit_id in test_ids],
    }


def pubmedqa_task(sources: Sources) -> TaskData:
    examples, test_ids = read_pubmedqa(sources.pubmedqa)
    bundled = sources.bundled["pubmedqa"]
    where = _relative(sources.pubmedqa) if bundled else "pubmedqa/ori_pqal.json"
    return TaskData(
        "pubmedqa",
        PAIR,
        list(PUBMEDQA_LABELS),
        split_pubmedqa(examples, test_ids),
        f"{where}; test = the official test PMIDs, the rest train/eval 9/1 by PMID hash",
        bundled,
    )


TASKS = ("mtsamples_multi", "mtsamples_single", "ncbi_disease", "pubmedqa")


def load_tasks(sources: Sources, names: Sequence[str] = TASKS) -> dict[str, TaskData]:
    """The named tasks, in TASKS order."""
    tasks: dict[str, TaskData] = {}
    if {"mtsamples_multi", "mtsamples_single"} & set(names):
        multi, single = mtsamples_tasks(sources)
        tasks.update(mtsamples_multi=multi, mtsamples_single=single)
    if "ncbi_disease" in names:
        tasks["ncbi_disease"] = ncbi_task(sources)
    if "pubmedqa" in names:
        tasks["pubmedqa"] = pubmedqa_task(sources)
    return {name: tasks[name] for name in TASKS if name in names}
