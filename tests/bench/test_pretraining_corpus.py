"""bench/pretraining_corpus.py: the corpus config's own leakage test. No unit of any downstream task's eval
or test split (as bench/quality_data.py splits them) is in the corpus, by id or by text. Every configured
source contributes, and every source record is either kept or excluded for a counted reason.

The corpus is built on the bundled samples. MedQuAD has no sample, so a small synthetic MedQuAD file
stands in for it, with records that plant leaks. The full public data are checked too when
../shared/data exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import pretraining_corpus as pc
from bench.quality_data import SAMPLES, find_sources, load_tasks

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"

HEALTH_ANSWERS = [
    "Iron deficiency anemia is a common condition in which the blood lacks healthy red cells.",
    "Regular physical activity lowers blood pressure and improves sleep in most adults.",
    "Vaccines train the immune system to recognize a germ without causing the disease itself.",
    "Dehydration in older adults can cause confusion, dizziness and constipation.",
]


def _medquad_record(file: str, qid: str, answer: str) -> dict:
    return {
        "subset": file.split("/")[0],
        "file": file,
        "qid": qid,
        "question": "What is it?",
        "answer": answer,
    }


def planted_medquad(root: Path) -> dict[str, str]:
    """Writes root/medquad/medquad_answered.jsonl: ordinary answers plus one record for each rule that
    must drop it. Returns the planted records' corpus ids -> the reason expected."""
    tasks = load_tasks(find_sources(root))
    pubmedqa_test_context = tasks["pubmedqa"].splits["test"][0].text_b
    note = next(n for n in tasks["mtsamples_multi"].splits["test"] if len(pc.normalized_words(n.text)) > 90)
    passage = " ".join(pc.normalized_words(note.text)[20:80])  # a 60-word passage of a test note
    records = [
        _medquad_record(f"1_Synthetic_QA/{i:07d}.xml", f"{i:07d}-1", a) for i, a in enumerate(HEALTH_ANSWERS)
    ]
    planted = {
        "same_text_as_eval_test": _medquad_record(
            "9_Planted/0000001.xml", "0000001-1", pubmedqa_test_context
        ),
        "passage_in_eval_test": _medquad_record(
            "9_Planted/0000002.xml", "0000002-1", f"Some words before it. {passage} And words after it."
        ),
        "duplicate_text": _medquad_record("9_Planted/0000003.xml", "0000003-1", HEALTH_ANSWERS[0].upper()),
        "empty_text": _medquad_record("9_Planted/0000004.xml", "0000004-1", " ... "),
    }
    duplicate_id = dict(records[1], answer="Another answer under a (file, qid) already read.")
    lines = [*records, *planted.values(), duplicate_id]
    (root / "medquad").mkdir(parents=True)
    with open(root / "medquad" / "medquad_answered.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in lines)
    return {f"medquad:{r['file']}#{r['qid']}": reason for reason, r in planted.items()}


@pytest.fixture(scope="module")
def planted_root(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("data")
    return root, planted_medquad(root)


@pytest.fixture(scope="module")
def corpus(planted_root) -> pc.Corpus:
    return pc.build_corpus(planted_root[0])


# -- the leakage check, written independently of the builder's passage index --------------------------


def _protected_ids(root: Path) -> set[str]:
    """Corpus ids that eval/test units would have: MTSamples notes, and PMIDs under both PubMed sources."""
    tasks = load_tasks(find_sources(root))
    ids = {
        f"mtsamples:{n.unit_id}"
        for split in pc.PROTECTED_SPLITS
        for n in tasks["mtsamples_multi"].splits[split]
    }
    pmids = {e.unit_id for split in pc.PROTECTED_SPLITS for e in tasks["pubmedqa"].splits[split]}
    original = root / "ncbi_disease" / "original"
    if original.is_dir():
        pmids |= {
            pmid
            for split in ("eval", "test")
            for pmid, _ in pc.read_pubtator(original / pc.NCBI_ORIGINAL[split])
        }
    else:
        for line in (SAMPLES / "ncbi_disease_sample.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["split"] != "train":
                pmids.add(str(record["id"]))
    return ids | {f"{source}:{pmid}" for pmid in pmids for source in ("pubmedqa", "ncbi_disease")}


def assert_no_eval_or_test_unit_in(documents: list[pc.Document], root: Path) -> int:
    """Fails on a corpus document that has an eval/test unit's id, or shares text with one: any window of
    `shingle_words` words of a long unit, a shorter unit of at least `min_passage_words` words whole, a
    shorter one still as the whole document (the config's terms). Exact word lists, looked up by their
    first `min_passage_words` words; no hashing (not the builder's index). Returns the units checked."""
    leaked = {d.id for d in documents} & _protected_ids(root)
    assert not leaked, sorted(leaked)[:5]
    settings = pc.load_config().decontamination
    size, anchor = settings.shingle_words, settings.min_passage_words
    units: list[tuple[str, list[str]]] = []
    by_anchor: dict[str, list[tuple[int, int, int]]] = {}  # first words -> (unit, start, length)
    short: dict[str, str] = {}
    for task in load_tasks(find_sources(root)).values():
        for split in pc.PROTECTED_SPLITS:
            for text in pc.protected_texts(task, split):
                words = pc.normalized_words(text)
                units.append((f"{task.name} {split}", words))
                length = min(size, len(words))
                if length < anchor:
                    short[" ".join(words)] = units[-1][0]
                for start in range(len(words) - length + 1 if length >= anchor else 0):
                    key = " ".join(words[start : start + anchor])
                    by_anchor.setdefault(key, []).append((len(units) - 1, start, length))
    for document in documents:
        words = pc.normalized_words(document.text)
        assert " ".join(words) not in short, (document.id, short.get(" ".join(words)))
        for i in range(len(words) - anchor + 1):
            for unit, start, length in by_anchor.get(" ".join(words[i : i + anchor]), ()):
                where, unit_words = units[unit]
                assert words[i : i + length] != unit_words[start : start + length], (document.id, where)
    return len(units)


def test_no_eval_or_test_unit_is_in_the_corpus_by_id_or_by_text(corpus, planted_root):
    checked = assert_no_eval_or_test_unit_in(corpus.documents, planted_root[0])
    units = corpus.manifest["decontamination"]["protected_units"]
    assert checked >= sum(n for splits in units.values() for n in splits.values())


def test_the_same_text_under_another_id_is_excluded_with_its_reason(corpus, planted_root):
    planted = planted_root[1]
    ids = {d.id for d in corpus.documents}
    assert not ids & set(planted)
    medquad = corpus.manifest["sources"]["medquad"]
    expected = {reason: 1 for reason in planted.values()} | {"duplicate_id": 1}
    assert medquad["excluded"] == expected
    assert medquad["documents"] == len(HEALTH_ANSWERS)


def test_every_configured_source_contributed_and_the_manifest_adds_up(corpus):
    manifest = corpus.manifest
    configured = [spec.name for spec in pc.load_config().sources]
    assert list(manifest["sources"]) == configured
    assert manifest["data"]["missing"] == []
    for name, source in manifest["sources"].items():
        mine = [d for d in corpus.documents if d.source == name]
        assert source["documents"] == len(mine) > 0, name
        assert source["characters"] == sum(len(d.text) for d in mine), name
        assert source["records"] == source["documents"] + sum(source["excluded"].values()), name
        assert set(source["excluded"]) <= set(pc.REASONS), name
    # Each task-bound source dropped exactly its eval and test units.
    units = manifest["decontamination"]["protected_units"]
    for name, task in (("mtsamples", "mtsamples_multi"), ("pubmedqa", "pubmedqa")):
        excluded = manifest["sources"][name]["excluded"]
        assert excluded["eval_split"] == units[task]["eval"] and excluded["test_split"] == units[task]["test"]
    total = manifest["total"]
    assert total["documents"] == len(corpus.documents) == len({d.id for d in corpus.documents})
    assert total["records"] == total["documents"] + sum(total["excluded"].values())
    # MTSamples stands in from its bundled sample, named relative to the repository.
    mtsamples = manifest["sources"]["mtsamples"]
    assert mtsamples["bundled"] and mtsamples["file"] == "data/sample/mtsamples_sample.csv"


def test_without_the_data_folder_medquad_is_left_out_and_said_so(tmp_path, capsys):
    code = pc.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0
    assert "bundled samples in data/sample stand in" in captured.err
    assert "left out (no file, no sample): medquad" in captured.out
    manifest = json.loads((tmp_path / "out" / pc.MANIFEST_FILE).read_text())
    assert manifest["data"]["missing"] == ["medquad"]
    assert manifest["sources"]["medquad"]["records"] == manifest["sources"]["medquad"]["documents"] == 0
    lines = (tmp_path / "out" / pc.JSONL_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == manifest["total"]["documents"]


@pytest.mark.slow  # importing TFX's fileio takes most of its 20 s
def test_jsonl_corpus_is_what_clinical_example_gen_reads(corpus, tmp_path):
    from components.clinical_example_gen import readers
    from components.clinical_example_gen.records import NoteRecord

    pc.write_corpus(corpus, tmp_path, "jsonl")
    path = str(tmp_path / pc.JSONL_FILE)
    config = readers.JsonlConfig.from_dict(pc.EXAMPLE_GEN_READER)
    results = list(readers.read_jsonl(path, pc.JSONL_FILE, config, readers.DEFAULT_MAX_NOTE_BYTES))
    assert all(isinstance(r, NoteRecord) for r in results)
    assert [r.note_id for r in results] == [d.id for d in corpus.documents]
    assert [r.metadata["source"] for r in results] == [d.source for d in corpus.documents]


def test_text_format_is_a_sentence_a_line_and_a_blank_line_between_documents(corpus, tmp_path):
    manifest = pc.write_corpus(corpus, tmp_path, "text")
    blocks = (tmp_path / pc.TEXT_FILE).read_text(encoding="utf-8").split("\n\n")
    assert blocks[-1] == ""
    blocks = blocks[:-1]
    assert len(blocks) == len(corpus.documents)
    assert sum(len(block.split("\n")) for block in blocks) == manifest["output"]["sentences"]
    for block, document in zip(blocks, corpus.documents, strict=True):
        lines = block.split("\n")
        assert all(line.strip() == line and line for line in lines)
        # Segmentation loses no word: the lines hold the normalized document's words, in order.
        assert pc.normalized_words(" ".join(lines)) == pc.normalized_words(document.text), document.id
    assert max(len(block.split("\n")) for block in blocks) > 5  # documents are split into sentences


def test_an_abstract_whose_pmid_is_another_tasks_test_unit_is_excluded(tmp_path):
    """NCBI-disease from PubTator files whose train set holds a PubMedQA test PMID (other text)."""
    test_pmid = load_tasks(find_sources(tmp_path))["pubmedqa"].splits["test"][0].unit_id
    original = tmp_path / "ncbi_disease" / "original"
    original.mkdir(parents=True)
    abstracts = {
        "train": [(test_pmid, "Shared abstract"), ("90000001", "Kept one"), ("90000002", "Kept two")],
        "eval": [("90000003", "Devel one")],
        "test": [("90000004", "Test one")],
    }
    for split, documents in abstracts.items():
        text = "".join(
            f"{pmid}|t|{title}: a title.\n{pmid}|a|{title} holds an abstract about a disease.\n\n"
            for pmid, title in documents
        )
        (original / pc.NCBI_ORIGINAL[split]).write_text(text, encoding="utf-8")
    corpus = pc.build_corpus(tmp_path)
    ncbi = corpus.manifest["sources"]["ncbi_disease"]
    assert ncbi["file"] == "ncbi_disease/original" and not ncbi["bundled"]
    assert ncbi["excluded"] == {"eval_split": 1, "test_split": 1, "pmid_in_eval_test": 1}
    kept = [d.id for d in corpus.documents if d.source == "ncbi_disease"]
    assert kept == ["ncbi_disease:90000001", "ncbi_disease:90000002"]
    assert corpus.manifest["decontamination"]["protected_pmids"] >= 2 + 1


# -- the parts ---------------------------------------------------------------------------------------


def test_passage_index_finds_windows_and_short_units_anywhere_and_nothing_else():
    index = pc.PassageIndex(shingle_words=6, min_words=3)
    index.add(list("abcdefgh"))  # windows a..f, b..g, c..h
    index.add(list("xyz"))  # shorter than 6: whole
    index.add(list("pq"))  # shorter than min_words: not indexed
    assert len(index) == 4
    assert index.found_in(list("mnbcdefgo"))
    assert index.found_in([*"lead", *"xyz"])
    assert not index.found_in(list("abcdegh"))  # no six consecutive words of the unit
    assert not index.found_in(list("xywzpq"))
    assert not index.found_in([])
    with pytest.raises(ValueError, match="min_passage_words"):
        pc.Decontamination(shingle_words=5, min_passage_words=8)


def test_pubtator_documents_join_title_and_abstract_and_keep_a_repeated_pmid(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(
        "11|t|A title.\n11|a|An abstract.\n11\t0\t3\tword\tDiseaseClass\tD1\n\n"
        "22|t|Second.\n22|a|Body.\n\n22|t|Second.\n22|a|Body.\n",
        encoding="utf-8",
    )
    assert pc.read_pubtator(path) == [
        ("11", "A title.\nAn abstract."),
        ("22", "Second.\nBody."),
        ("22", "Second.\nBody."),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "mtsamples", "take": "all"}, "may take only 'train'"),
        ({"name": "pubmedqa", "take": "test"}, "may take only 'train'"),
        ({"name": "medquad", "take": "train"}, "may take only 'all'"),
        ({"name": "ncbi_disease", "task": "pubmedqa"}, "belongs to task 'ncbi_disease'"),
        ({"name": "mimic", "take": "all"}, "unknown source"),
    ],
)
def test_config_refuses_a_downstream_sources_eval_or_test_part(tmp_path, change, message):
    config = json.loads(pc.CONFIG.read_text())
    sources = [dict(s, **change) if s["name"] == change["name"] else s for s in config["sources"]]
    if change["name"] not in {s["name"] for s in config["sources"]}:
        sources.append({"what": "", **change})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config, "sources": sources}))
    with pytest.raises(ValueError, match=message):
        pc.load_config(path)


# -- the full public data ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="../shared/data is not here (CI): the bundled test covers it"
)
def test_full_data_corpus_has_no_eval_or_test_unit_and_accounts_for_every_record():
    corpus = pc.build_corpus(SHARED_DATA)
    manifest = corpus.manifest
    assert manifest["data"] == {"root": str(SHARED_DATA), "bundled_samples_for": [], "missing": []}
    assert_no_eval_or_test_unit_in(corpus.documents, SHARED_DATA)
    for name, source in manifest["sources"].items():
        assert source["documents"] > 0 and not source["bundled"], name
        assert source["records"] == source["documents"] + sum(source["excluded"].values()), name
    sources = manifest["sources"]
    # The README's counts: 5,111 rows, 2,377 sample_ids, 2,376 transcriptions; 1,000 PQA-L questions of
    # which the official 500 are test; 793 abstracts, one PMID listed twice in the train set.
    assert sources["mtsamples"]["records"] == 5111
    assert sources["mtsamples"]["excluded"]["duplicate_id"] == 5111 - 2377
    assert sources["mtsamples"]["excluded"]["duplicate_text"] == 1
    assert sources["pubmedqa"]["records"] == 1000 and sources["pubmedqa"]["excluded"]["test_split"] == 500
    assert sources["ncbi_disease"]["records"] == 793 and sources["ncbi_disease"]["documents"] == 592
    assert sources["medquad"]["records"] == 16407
