"""MakeInstances against the sequential reference, `create_instances`, in one process and in two."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from albert_keras.pretraining_data import (
    WORD_START,
    Instance,
    MaskingConfig,
    Vocabulary,
    create_instances,
    document_key,
    padded,
)
from albert_keras.pretraining_shards import schema
from components.pretraining_examples.instances import METRICS_NAMESPACE, MakeInstances

# Beam and numpy only: no Keras backend code runs here.
pytestmark = pytest.mark.backend_independent

PIECES = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]", ".", ","]
PIECES += [f"{WORD_START}w{i}" for i in range(150)] + [f"x{i}" for i in range(100)]
VOCAB = Vocabulary.from_pieces(PIECES)
STARTS = [i for i, p in enumerate(PIECES) if p.startswith(WORD_START)]
CONTINUATIONS = [i for i, p in enumerate(PIECES) if p.startswith("x")]
CONFIG = MaskingConfig(max_seq_length=48, max_predictions_per_seq=8, dupe_factor=2)
POOL_SIZE = 5


def synthetic_corpus(num_documents: int, seed: int = 0) -> list[list[np.ndarray]]:
    """Documents of 1-6 sentences of words (a start piece and 0-2 continuation pieces); a third of
    them of a single sentence, whose pairs take their second segment from the pool."""
    rng = np.random.default_rng(seed)
    documents = []
    for d in range(num_documents):
        document = []
        for _ in range(1 if d % 3 == 0 else rng.integers(2, 7)):
            sentence = []
            for _ in range(rng.integers(2, 10)):
                sentence.append(int(rng.choice(STARTS)))
                sentence += [int(c) for c in rng.choice(CONTINUATIONS, size=rng.integers(0, 3))]
            sentence.append(VOCAB.pieces.index("."))
            document.append(np.array(sentence, np.int32))
        documents.append(document)
    return documents


CORPUS = synthetic_corpus(40)


def run_instances(
    documents: list[list[np.ndarray]], out: Path, seed: int = 0, options: PipelineOptions | None = None
) -> tuple[list[dict], dict[str, int]]:
    """The rows MakeInstances makes of `documents`, written with Beam's Parquet sink and read back, and
    the pipeline's counters."""
    pipeline = beam.Pipeline(options=options)
    _ = (
        pipeline
        | beam.Create(documents)
        | MakeInstances(VOCAB, CONFIG, seed, random_pool_size=POOL_SIZE)
        | beam.io.WriteToParquet(
            str(out / "rows"),
            schema(CONFIG.max_seq_length, CONFIG.max_predictions_per_seq),
            file_name_suffix=".parquet",
        )
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    rows = [row for path in sorted(out.glob("rows*.parquet")) for row in pq.read_table(path).to_pylist()]
    return rows, {c.key.metric.name: c.committed for c in counters}


def padded_rows(
    rows: list[dict], vocab: Vocabulary = VOCAB, config: MaskingConfig = CONFIG
) -> list[tuple[int, int, dict[str, np.ndarray]]]:
    """(document key, index, padded instance) of each row, sorted by key and index."""
    instances = [
        Instance(
            document_key=row["document_key"],
            index=row["index"],
            tokens=np.array(row["tokens"], np.int32),
            a_length=row["a_length"],
            positions=np.array(row["positions"], np.int32),
            labels=np.array(row["labels"], np.int32),
            sop_label=row["sop_label"],
        )
        for row in rows
    ]
    keyed = [(i.document_key, i.index, padded(i, vocab, config)) for i in instances]
    return sorted(keyed, key=lambda entry: entry[:2])


def reference(
    documents: list[list[np.ndarray]],
    counts: Counter,
    seed: int = 0,
    vocab: Vocabulary = VOCAB,
    config: MaskingConfig = CONFIG,
    random_pool_size: int = POOL_SIZE,
) -> list[tuple[int, int, dict[str, np.ndarray]]]:
    """`create_instances`, each instance labelled with its document's key and its index: documents come
    in input order and each one's instances in index order, `counts[key]` of them (the rows' count)."""
    stream = create_instances(documents, vocab, config, seed, random_pool_size)
    keyed = []
    for document in documents:
        key = document_key(document)
        keyed += [(key, index, next(stream)) for index in range(counts[key])]
    assert next(stream, None) is None, "create_instances made more instances than the rows"
    return sorted(keyed, key=lambda entry: entry[:2])


def assert_same_instances(actual: list[tuple], expected: list[tuple]) -> None:
    """Equal (key, index) lists, and equal arrays in each pair of padded instances."""
    assert [entry[:2] for entry in actual] == [entry[:2] for entry in expected]
    for (key, index, a), (_, _, b) in zip(actual, expected, strict=True):
        for name in b:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"document {key}, {index}: {name}")


@pytest.fixture(scope="module")
def direct_rows(tmp_path_factory) -> tuple[list[dict], dict[str, int]]:
    return run_instances(CORPUS, tmp_path_factory.mktemp("direct"))


def test_corpus_exercises_the_pool():
    keys = [document_key(d) for d in CORPUS]
    assert len(set(keys)) == len(CORPUS)
    assert len(CORPUS) > 4 * POOL_SIZE
    assert sum(len(d) == 1 for d in CORPUS) > POOL_SIZE


def test_rows_are_the_sequential_instances(direct_rows):
    rows, counters = direct_rows
    counts = Counter(row["document_key"] for row in rows)
    assert_same_instances(padded_rows(rows), reference(CORPUS, counts))
    assert counters["documents"] == len(CORPUS)
    assert counters["instances"] == len(rows) > len(CORPUS)


def test_rows_depend_on_the_pool(direct_rows, tmp_path):
    """Pairs of single-sentence documents take their B segment from the pool: with documents of the
    pool missing, a single-sentence document outside it gets other instances."""
    rows, _ = direct_rows
    pool_keys = sorted(document_key(d) for d in CORPUS)[:POOL_SIZE]
    single = next(d for d in CORPUS if len(d) == 1 and document_key(d) not in pool_keys)
    without_pool = [d for d in CORPUS if document_key(d) not in pool_keys[:2]]
    other_rows, _ = run_instances(without_pool, tmp_path)
    key = document_key(single)
    before = [r["tokens"] for r in rows if r["document_key"] == key]
    after = [r["tokens"] for r in other_rows if r["document_key"] == key]
    assert before and after and before != after


def test_another_seed_makes_other_instances(direct_rows, tmp_path):
    rows, _ = direct_rows
    other, _ = run_instances(CORPUS, tmp_path, seed=1)
    counts = Counter(row["document_key"] for row in other)
    assert_same_instances(padded_rows(other), reference(CORPUS, counts, seed=1))
    tokens = {(r["document_key"], r["index"]): r["tokens"] for r in rows}
    changed = sum(tokens.get((r["document_key"], r["index"])) != r["tokens"] for r in other)
    assert changed > len(other) // 2


@pytest.mark.parametrize(
    "mode",
    [
        "in_memory",
        # Each worker process imports albert_keras, so Keras and TensorFlow: about a minute on two cores.
        pytest.param("multi_processing", marks=pytest.mark.slow),
    ],
)
def test_two_workers_make_the_same_rows(direct_rows, tmp_path, mode):
    rows, _ = direct_rows
    options = PipelineOptions(direct_num_workers=2, direct_running_mode=mode)
    other, counters = run_instances(CORPUS, tmp_path, options=options)
    assert_same_instances(padded_rows(other), padded_rows(rows))
    assert counters["documents"] == len(CORPUS)
