"""`MakeInstances`: ALBERT pretraining instances of a PCollection of documents, on any number of workers.

Each document is keyed by its content hash (`document_key`) and turned into instances by
`document_instances`, whose generator is seeded by (seed, key) alone. The only thing a document needs
from the others is the random pool (the `random_pool_size` documents with the smallest keys, where
single-sentence chunks take their second segment from), computed by a combiner whose result depends
on the documents, not on their order or partitioning, and handed to every worker as a side input. So
the rows are those `pretraining_data.create_instances` makes sequentially, wherever they are made.
Nothing but that bounded pool is gathered on one worker.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
import numpy as np

from albert_keras.pretraining_data import MaskingConfig, Vocabulary, document_instances, document_key
from albert_keras.pretraining_shards import instance_row

#: The namespace of the Beam counters below.
METRICS_NAMESPACE = "pretraining_examples"

#: A document (one 1-D integer array per sentence) with its content hash.
KeyedDocument = tuple[int, Sequence[np.ndarray]]


def _keyed(document: Sequence[np.ndarray]) -> KeyedDocument:
    return document_key(document), document


def _pool_order(keyed: KeyedDocument) -> int:
    return keyed[0]


def _has_sentences(keyed: KeyedDocument) -> bool:
    return len(keyed[1]) > 0


class _DocumentInstances(beam.DoFn):
    """Emits the `instance_row` of every instance of a keyed document, given the pool."""

    def __init__(self, vocab: Vocabulary, config: MaskingConfig, seed: int) -> None:
        self._vocab = vocab
        self._config = config
        self._seed = seed
        self._documents = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "documents")
        self._without_instances = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, "documents_without_instances"
        )
        self._instances = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "instances")

    def setup(self) -> None:
        self._word_starts = self._vocab.word_starts()
        self._replacement_ids = self._vocab.replacement_ids()

    def process(self, keyed: KeyedDocument, pool: list[KeyedDocument]) -> Iterator[dict]:
        key, document = keyed
        count = 0
        for instance in document_instances(
            document,
            key,
            self._vocab,
            self._config,
            self._seed,
            pool,
            self._word_starts,
            self._replacement_ids,
        ):
            count += 1
            yield instance_row(instance)
        self._documents.inc()
        self._instances.inc(count)
        if not count:
            self._without_instances.inc()


class MakeInstances(beam.PTransform):
    """Documents (lists of 1-D integer arrays, one per sentence) -> rows of `pretraining_shards.schema`.

    The rows are those of `create_instances(documents, vocab, config, seed, random_pool_size)`,
    unpadded, in no particular order, whatever the runner and the number of workers. Counters (namespace
    `METRICS_NAMESPACE`): documents, documents_without_instances, instances.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        config: MaskingConfig,
        seed: int,
        random_pool_size: int = 1000,
        label: str | None = None,
    ) -> None:
        super().__init__(label)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, received {seed}")
        if random_pool_size < 0:
            raise ValueError(f"random_pool_size must be >= 0, received {random_pool_size}")
        self._vocab = vocab
        self._config = config
        self._seed = seed
        self._random_pool_size = random_pool_size

    def expand(self, documents: beam.PCollection) -> beam.PCollection:
        keyed = documents | "Key" >> beam.Map(_keyed)
        # `random_pool`, as a combiner: each bundle keeps at most `random_pool_size` documents.
        pool = (
            keyed
            | "WithSentences" >> beam.Filter(_has_sentences)
            | "RandomPool" >> beam.combiners.Top.Smallest(self._random_pool_size, key=_pool_order)
        )
        return keyed | "Instances" >> beam.ParDo(
            _DocumentInstances(self._vocab, self._config, self._seed), beam.pvalue.AsSingleton(pool)
        )
