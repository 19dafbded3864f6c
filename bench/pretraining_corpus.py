"""The pretraining corpus of `bench/pretrain_gain.py`: public clinical and biomedical text in which no
eval or test unit of `bench/quality.py`'s tasks appears, by id or by text.

What it takes is configured in `bench/pretraining_corpus.json`: MTSamples notes of the train split,
MedQuAD answers, PubMedQA contexts of the train split's PMIDs, and NCBI-disease's official train
abstracts. The splits come from `bench/quality_data.py` (its readers and split functions, on the same
files), so the corpus cannot take a document of an eval or test split by id. Text is checked as well,
because the same text can appear under two ids: MTSamples lists one transcription under two
sample_ids, and a PubMed abstract can be both a PubMedQA context and an NCBI-disease abstract. Every
eval and test unit of every task is protected (notes; questions and contexts; NER sentences). A
document is dropped when its normalized words equal a protected unit's, or when they contain a
protected passage. A passage is any `shingle_words`-word window of a unit, or a whole shorter unit of
at least `min_passage_words` words. Normalized words are the `\\w+` runs of the text as ingestion
normalizes it, case-folded, so the tokenized CoNLL sentences match the running text they were cut from.

Each source record is either kept or excluded for exactly one reason: the first of REASONS that
applies. The manifest counts each one:

    eval_split, test_split   the record is a unit of a downstream task's eval or test split
    duplicate_id             an id read before (MTSamples' extra rows of a note; a repeated PMID)
    empty_text               nothing to read
    duplicate_text           the same normalized text as a document already kept (any source),
                             or, for MTSamples, a note merged into another id by quality_data
    pmid_in_eval_test        a PubMed abstract whose PMID is an eval/test unit of another PubMed task
    same_text_as_eval_test   normalized text equal to an eval/test unit's
    passage_in_eval_test     contains a passage of an eval/test unit

The output folder (--out) gets manifest.json and one of two corpus files:
- corpus.jsonl (the default): one document per line, with `id` ("mtsamples:123"), `source` and
  `text`. ClinicalExampleGen reads it as input_format "jsonl" with reader_config
  {"metadata_keys": {"source": "source"}}, since id and text are the reader's default keys.
- corpus.txt (with `--format text`): google-research's format for `albert_keras.pretrain_cli`, one
  sentence per line and a blank line between documents. Sentences come from the project's clinical
  segmenter (`components.clinical_text.segment`) after `normalize_text`.

    .venv/bin/python bench/pretraining_corpus.py --data ../shared/data --out DIR [--format jsonl|text]

Without the data folder, the bundled samples in data/sample stand in, and the command says so. MedQuAD
has no sample, so it is then left out. Nothing here prints or logs document text, only counts and ids,
and nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.quality_data import SPLITS, Sources, TaskData, find_sources, load_tasks  # noqa: E402
from components.clinical_text.normalize import normalize_text  # noqa: E402
from components.clinical_text.segment import segment_sentences  # noqa: E402

CONFIG = ROOT / "bench" / "pretraining_corpus.json"
DEFAULT_DATA = "../shared/data"
MANIFEST_FILE, JSONL_FILE, TEXT_FILE = "manifest.json", "corpus.jsonl", "corpus.txt"
FORMATS = ("jsonl", "text")
#: ClinicalExampleGen's jsonl reader config for corpus.jsonl: `id` and `text` are its default keys.
EXAMPLE_GEN_READER: dict[str, Any] = {"metadata_keys": {"source": "source"}}
#: The splits whose units no corpus document may hold: every split but train.
PROTECTED_SPLITS = tuple(split for split in SPLITS if split != "train")

EVAL_SPLIT, TEST_SPLIT = "eval_split", "test_split"
DUPLICATE_ID, EMPTY_TEXT, DUPLICATE_TEXT = "duplicate_id", "empty_text", "duplicate_text"
PMID_IN_EVAL_TEST, SAME_TEXT, PASSAGE = "pmid_in_eval_test", "same_text_as_eval_test", "passage_in_eval_test"
REASONS = (
    EVAL_SPLIT,
    TEST_SPLIT,
    DUPLICATE_ID,
    EMPTY_TEXT,
    DUPLICATE_TEXT,
    PMID_IN_EVAL_TEST,
    SAME_TEXT,
    PASSAGE,
)

#: NCBI-disease's PubTator files (ncbi_disease/original) per benchmark split: devel is eval.
NCBI_ORIGINAL = {
    "train": "NCBItrainset_corpus.txt",
    "eval": "NCBIdevelopset_corpus.txt",
    "test": "NCBItestset_corpus.txt",
}
_NCBI_SAMPLE_SPLITS = {"train": "train", "devel": "eval", "dev": "eval", "test": "test"}
_PUBTATOR_LINE = re.compile(r"(\d+)\|([ta])\|(.*)")
_WORD = re.compile(r"\w+")


def normalized_words(text: str) -> list[str]:
    """The words the overlap checks compare: the `\\w+` runs of the text as ingestion normalizes it
    (`normalize_text`: NFKC, control and format characters such as soft hyphens dropped), case-folded."""
    return _WORD.findall(normalize_text(text).casefold())


def split_reason(split: str) -> str:
    """The exclusion reason of a record in a protected split."""
    return {"eval": EVAL_SPLIT, "test": TEST_SPLIT}[split]


@dataclasses.dataclass(frozen=True)
class Document:
    """One corpus document. `pmid` is set for PubMed abstracts, which two tasks may share."""

    id: str
    source: str
    text: str
    pmid: str | None = None


@dataclasses.dataclass(frozen=True)
class Decontamination:
    """How text overlap with protected units is found (see the module docstring)."""

    shingle_words: int = 50
    min_passage_words: int = 12

    def __post_init__(self) -> None:
        if not 1 <= self.min_passage_words <= self.shingle_words:
            raise ValueError(
                "decontamination needs 1 <= min_passage_words <= shingle_words, received "
                f"min_passage_words={self.min_passage_words}, shingle_words={self.shingle_words}"
            )


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One configured source: which reader (`name`), which task it belongs to, which part it takes."""

    name: str
    take: str
    what: str
    task: str | None = None
    path: str | None = None
    bundled: str | None = None


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """The sources in the order their documents are written, the overlap settings, and the file read."""

    sources: tuple[SourceSpec, ...]
    decontamination: Decontamination
    path: Path = CONFIG


def load_config(path: str | Path = CONFIG) -> CorpusConfig:
    """Reads and checks the corpus config. A source that a task reads may take only its train split."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    specs = []
    for entry in raw["sources"]:
        spec = SourceSpec(**entry)
        if spec.name not in READERS:
            raise ValueError(f"corpus config: unknown source {spec.name!r}; known: {sorted(READERS)}")
        task = READERS[spec.name][0]
        if spec.task != task:
            raise ValueError(
                f"corpus config: source {spec.name!r} belongs to task {task!r}, not {spec.task!r}"
            )
        allowed = "train" if task else "all"
        if spec.take != allowed:
            raise ValueError(
                f"corpus config: source {spec.name!r} may take only {allowed!r}, received {spec.take!r}"
                + (": its eval and test splits are downstream evaluation data" if task else "")
            )
        specs.append(spec)
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"corpus config: a source is listed twice: {names}")
    return CorpusConfig(tuple(specs), Decontamination(**raw.get("decontamination", {})), Path(path))


# -- reading the sources -----------------------------------------------------------------------------


@dataclasses.dataclass
class SourceRead:
    """What one source held: its records, those excluded before the text checks (by reason), the
    candidate documents, and the PMIDs of its records in protected splits."""

    file: str
    bundled: bool
    records: int = 0
    excluded: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    candidates: list[Document] = dataclasses.field(default_factory=list)
    protected_pmids: set[str] = dataclasses.field(default_factory=set)
    missing: bool = False


def _shown(path: Path, data_root: Path) -> str:
    """A file as the manifest names it: relative to the data folder or to the repository."""
    for base in (data_root, ROOT):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return path.name


def _mtsamples_row_counts(path: Path) -> tuple[int, int, int]:
    """(rows, rows without an id or text, distinct ids among the others), by read_mtsamples' rule."""
    csv.field_size_limit(1 << 26)
    rows = blank = 0
    ids: set[str] = set()
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rows += 1
            sample_id = row["sample_id"].strip()
            if not sample_id or not row["transcription"].strip():
                blank += 1
            else:
                ids.add(sample_id)
    return rows, blank, len(ids)


def _read_mtsamples(spec: SourceSpec, sources: Sources, tasks: dict[str, TaskData], root: Path) -> SourceRead:
    """Rows of the benchmark's CSV; the notes are mtsamples_multi's, split as the benchmark splits."""
    task = tasks["mtsamples_multi"]
    rows, blank, ids = _mtsamples_row_counts(sources.mtsamples)
    notes = sum(len(units) for units in task.splits.values())
    read = SourceRead(_shown(sources.mtsamples, root), sources.bundled["mtsamples"], records=rows)
    read.excluded.update({EMPTY_TEXT: blank, DUPLICATE_ID: rows - blank - ids, DUPLICATE_TEXT: ids - notes})
    for split in PROTECTED_SPLITS:
        read.excluded[split_reason(split)] += len(task.splits[split])
    read.candidates = [Document(f"mtsamples:{n.unit_id}", "mtsamples", n.text) for n in task.splits["train"]]
    return read


def _read_pubmedqa(spec: SourceSpec, sources: Sources, tasks: dict[str, TaskData], root: Path) -> SourceRead:
    """PubMedQA's labelled PMIDs, split as the benchmark splits them; a train PMID's contexts."""
    task = tasks["pubmedqa"]
    records = sum(len(units) for units in task.splits.values())
    read = SourceRead(_shown(sources.pubmedqa, root), sources.bundled["pubmedqa"], records=records)
    for split in PROTECTED_SPLITS:
        read.excluded[split_reason(split)] += len(task.splits[split])
        read.protected_pmids |= {e.unit_id for e in task.splits[split]}
    read.candidates = [
        Document(f"pubmedqa:{e.unit_id}", "pubmedqa", e.text_b or "", pmid=e.unit_id)
        for e in task.splits["train"]
    ]
    return read


def read_pubtator(path: Path) -> list[tuple[str, str]]:
    """(PMID, title + newline + abstract) of each document of a PubTator file, in file order."""
    documents: list[tuple[str, str]] = []
    parts: dict[str, str] = {}
    current = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            match = _PUBTATOR_LINE.fullmatch(line.rstrip("\r\n"))
            if match is None:
                continue  # a mention line, or the blank line between documents
            pmid, kind, text = match.groups()
            if pmid != current or kind in parts:
                if parts:
                    documents.append((current, "\n".join(parts.values())))
                current, parts = pmid, {}
            parts[kind] = text
    if parts:
        documents.append((current, "\n".join(parts.values())))
    return documents


def _ncbi_abstracts(spec: SourceSpec, data_root: Path) -> tuple[list[tuple[str, str, str]], Path, bool]:
    """(split, PMID, text) of every abstract, from the PubTator files or the bundled JSON-lines sample."""
    folder = data_root / (spec.path or "")
    if spec.path and all((folder / name).is_file() for name in NCBI_ORIGINAL.values()):
        abstracts = [
            (split, pmid, text)
            for split, name in NCBI_ORIGINAL.items()
            for pmid, text in read_pubtator(folder / name)
        ]
        return abstracts, folder, False
    if spec.bundled is None:
        raise FileNotFoundError(spec.path)
    sample = ROOT / spec.bundled
    abstracts = []
    with open(sample, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                abstracts.append((_NCBI_SAMPLE_SPLITS[record["split"]], str(record["id"]), record["text"]))
    return abstracts, sample, True


def _read_ncbi(spec: SourceSpec, sources: Sources, tasks: dict[str, TaskData], root: Path) -> SourceRead:
    """NCBI-disease's abstracts by official split: the train set's are candidates."""
    abstracts, path, bundled = _ncbi_abstracts(spec, root)
    read = SourceRead(_shown(path, root), bundled, records=len(abstracts))
    seen: set[str] = set()
    for split, pmid, text in abstracts:
        if split != "train":
            read.excluded[split_reason(split)] += 1
            read.protected_pmids.add(pmid)
        elif pmid in seen:
            read.excluded[DUPLICATE_ID] += 1
        else:
            seen.add(pmid)
            read.candidates.append(Document(f"ncbi_disease:{pmid}", "ncbi_disease", text, pmid=pmid))
    return read


def _read_medquad(spec: SourceSpec, sources: Sources, tasks: dict[str, TaskData], root: Path) -> SourceRead:
    """MedQuAD's answered pairs: the answer of each (file, qid)."""
    path = root / (spec.path or "")
    bundled = not path.is_file()
    if bundled:
        if spec.bundled is None:
            return SourceRead(spec.path or "", bundled=False, missing=True)
        path = ROOT / spec.bundled
    read = SourceRead(_shown(path, root), bundled)
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            read.records += 1
            # qids restart in every subset and repeat across some files of one subset: the file names them.
            key = f"{record.get('file') or ''}#{record.get('qid') or ''}"
            if key in seen:
                read.excluded[DUPLICATE_ID] += 1
                continue
            seen.add(key)
            read.candidates.append(Document(f"medquad:{key}", "medquad", record.get("answer") or ""))
    return read


Reader = Callable[[SourceSpec, Sources, dict[str, TaskData], Path], SourceRead]
#: Source name -> (the task whose splits it follows, or None; its reader).
READERS: dict[str, tuple[str | None, Reader]] = {
    "mtsamples": ("mtsamples_multi", _read_mtsamples),
    "medquad": (None, _read_medquad),
    "pubmedqa": ("pubmedqa", _read_pubmedqa),
    "ncbi_disease": ("ncbi_disease", _read_ncbi),
}


# -- protected units ---------------------------------------------------------------------------------


class PassageIndex:
    """The passages of the protected units, found inside any text in one pass over its words.

    A unit of at least `shingle_words` words gives every window of that many words; a shorter one of at
    least `min_words` words gives itself. Passages are kept as hashes and looked up through the hash of
    their first `min_words` words. A hash collision can only drop a document that holds no passage,
    never keep one that does.
    """

    def __init__(self, shingle_words: int, min_words: int):
        self.shingle_words = shingle_words
        self.min_words = min_words
        self._passages: set[int] = set()
        self._anchors: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return len(self._passages)

    def add(self, words: Sequence[str]) -> None:
        n = len(words)
        if n >= self.shingle_words:
            spans: Iterable[tuple[int, int]] = (
                (i, i + self.shingle_words) for i in range(n - self.shingle_words + 1)
            )
        elif n >= self.min_words:
            spans = [(0, n)]
        else:
            return
        for start, end in spans:
            passage = tuple(words[start:end])
            self._passages.add(hash(passage))
            self._anchors.setdefault(hash(passage[: self.min_words]), set()).add(end - start)

    def found_in(self, words: Sequence[str]) -> bool:
        """Whether `words` contain any passage."""
        n, m = len(words), self.min_words
        for i in range(n - m + 1):
            lengths = self._anchors.get(hash(tuple(words[i : i + m])))
            if lengths and any(
                i + length <= n and hash(tuple(words[i : i + length])) in self._passages for length in lengths
            ):
                return True
        return False


def protected_texts(task: TaskData, split: str) -> list[str]:
    """The texts of a split's units: notes; questions and contexts; sentences as their words joined."""
    units = task.splits[split]
    if task.kind == "entities":
        return [" ".join(sentence.words) for sentence in units]
    return [e.text for e in units] + [e.text_b for e in units if e.text_b]


@dataclasses.dataclass
class Protected:
    """Every eval and test unit of every task, as whole normalized texts and as passages."""

    texts: set[str]
    passages: PassageIndex
    units: dict[str, dict[str, int]]


def protect(tasks: dict[str, TaskData], settings: Decontamination) -> Protected:
    texts: set[str] = set()
    passages = PassageIndex(settings.shingle_words, settings.min_passage_words)
    units: dict[str, dict[str, int]] = {}
    for name, task in tasks.items():
        units[name] = {}
        for split in PROTECTED_SPLITS:
            units[name][split] = len(task.splits[split])
            for text in protected_texts(task, split):
                words = normalized_words(text)
                if words:
                    texts.add(" ".join(words))
                    passages.add(words)
    return Protected(texts, passages, units)


# -- building ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Corpus:
    """The kept documents, in config order then record order, and the manifest that accounts for them."""

    documents: list[Document]
    manifest: dict[str, Any]


def build_corpus(data_root: str | Path = DEFAULT_DATA, config: CorpusConfig | None = None) -> Corpus:
    """Reads every configured source and keeps what no exclusion rule drops (module docstring)."""
    config = config or load_config()
    root = Path(data_root)
    sources = find_sources(root)
    tasks = load_tasks(sources)
    protected = protect(tasks, config.decontamination)
    reads = {spec.name: READERS[spec.name][1](spec, sources, tasks, root) for spec in config.sources}
    protected_pmids = set().union(*(read.protected_pmids for read in reads.values()))

    kept_texts: set[str] = set()
    documents: list[Document] = []
    report: dict[str, Any] = {}
    for spec in config.sources:
        read = reads[spec.name]
        characters = 0
        kept_before = len(documents)
        for document in read.candidates:
            words = normalized_words(document.text)
            key = " ".join(words)
            if not words:
                reason = EMPTY_TEXT
            elif key in kept_texts:
                reason = DUPLICATE_TEXT
            elif document.pmid is not None and document.pmid in protected_pmids:
                reason = PMID_IN_EVAL_TEST
            elif key in protected.texts:
                reason = SAME_TEXT
            elif protected.passages.found_in(words):
                reason = PASSAGE
            else:
                kept_texts.add(key)
                documents.append(document)
                characters += len(document.text)
                continue
            read.excluded[reason] += 1
        report[spec.name] = {
            "file": read.file,
            "bundled": read.bundled,
            "missing": read.missing,
            "take": spec.take,
            "records": read.records,
            "documents": len(documents) - kept_before,
            "characters": characters,
            "excluded": {reason: read.excluded[reason] for reason in REASONS if read.excluded[reason]},
        }
    manifest = {
        "config": _shown(config.path, ROOT),
        "data": {
            "root": str(data_root),
            "bundled_samples_for": sorted(name for name, r in report.items() if r["bundled"]),
            "missing": sorted(name for name, r in report.items() if r["missing"]),
        },
        "decontamination": {
            **dataclasses.asdict(config.decontamination),
            "protected_splits": list(PROTECTED_SPLITS),
            "protected_units": protected.units,
            "protected_pmids": len(protected_pmids),
            "passages_indexed": len(protected.passages),
        },
        "sources": report,
        "total": {
            "records": sum(r["records"] for r in report.values()),
            "documents": len(documents),
            "characters": sum(r["characters"] for r in report.values()),
            "excluded": {
                reason: sum(r["excluded"].get(reason, 0) for r in report.values())
                for reason in REASONS
                if any(r["excluded"].get(reason) for r in report.values())
            },
        },
        "clinical_example_gen": {"input_format": "jsonl", "reader_config": EXAMPLE_GEN_READER},
    }
    return Corpus(documents, manifest)


# -- writing -----------------------------------------------------------------------------------------


def sentences(document: Document) -> list[str]:
    """The document's sentences, one line each: normalized, segmented, inner whitespace collapsed."""
    return [" ".join(s.split()) for s in segment_sentences(normalize_text(document.text)) if s.strip()]


def write_jsonl(documents: Iterable[Document], path: str | Path) -> int:
    """corpus.jsonl: one {"id", "source", "text"} object per line; returns the lines written."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for document in documents:
            f.write(json.dumps({"id": document.id, "source": document.source, "text": document.text}) + "\n")
            count += 1
    return count


def write_text(documents: Iterable[Document], path: str | Path) -> int:
    """google-research's text format: a sentence per line, a blank line after each document; returns the
    sentences written."""
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for document in documents:
            lines = sentences(document)
            if lines:
                f.write("\n".join(lines) + "\n\n")
                count += len(lines)
    return count


def write_corpus(corpus: Corpus, out: str | Path, fmt: str = "jsonl") -> dict[str, Any]:
    """Writes the corpus file of `fmt` and manifest.json into `out`; returns the manifest."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, received {fmt!r}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        written = {
            "file": JSONL_FILE,
            "format": "jsonl",
            "lines": write_jsonl(corpus.documents, folder / JSONL_FILE),
        }
    else:
        written = {
            "file": TEXT_FILE,
            "format": "text",
            "sentences": write_text(corpus.documents, folder / TEXT_FILE),
        }
    manifest = {**corpus.manifest, "output": written}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def format_summary(manifest: dict[str, Any]) -> str:
    """The manifest's counts as a table: per source its records, documents, characters, exclusions."""
    lines = [f"{'source':<14}{'file':<40}{'records':>9}{'documents':>11}{'characters':>13}  excluded"]
    for name, source in manifest["sources"].items():
        if source["missing"]:
            lines.append(f"{name:<14}missing: no {source['file']} in the data folder and no bundled sample")
            continue
        excluded = ", ".join(f"{reason} {n}" for reason, n in source["excluded"].items()) or "none"
        file = source["file"] + (" (bundled)" if source["bundled"] else "")
        lines.append(
            f"{name:<14}{file:<40}{source['records']:>9}{source['documents']:>11}{source['characters']:>13}  "
            f"{excluded}"
        )
    total = manifest["total"]
    lines.append(f"{'total':<54}{total['records']:>9}{total['documents']:>11}{total['characters']:>13}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="the shared data folder (default %(default)s)")
    parser.add_argument("--out", required=True, help="folder for the corpus file and manifest.json")
    parser.add_argument("--format", choices=FORMATS, default="jsonl", dest="fmt")
    parser.add_argument("--config", default=str(CONFIG), help="the corpus config (default: the bench's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"{args.data} is missing: the bundled samples in data/sample stand in for it", file=sys.stderr)
    corpus = build_corpus(args.data, load_config(args.config))
    manifest = write_corpus(corpus, args.out, args.fmt)
    bundled, missing = manifest["data"]["bundled_samples_for"], manifest["data"]["missing"]
    print(f"Pretraining corpus ({manifest['config']}), data {args.data}")
    if bundled:
        print(f"DATA: bundled samples stand in for {', '.join(bundled)}")
    if missing:
        print(f"DATA: left out (no file, no sample): {', '.join(missing)}")
    print(format_summary(manifest))
    print(f"wrote {Path(args.out) / manifest['output']['file']} and {Path(args.out) / MANIFEST_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
