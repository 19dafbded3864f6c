"""`resolvers.BuildOn` on a small ML Metadata store shaped as TFX writes it: what a run builds on is the
newest artifact made from other examples, so a rerun on the same examples resolves what the first run
on them did (and is cached)."""

from __future__ import annotations

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from components.sentencepiece_tokenizer.component import SentencePieceModel
from pipeline.resolvers import CANDIDATES_KEY, EXAMPLES_KEY, BuildOn

pytestmark = pytest.mark.backend_independent


class Store:
    """An ML Metadata store in SQLite with executions that read `examples` and write an artifact."""

    def __init__(self, path):
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.execution_type = self.store.put_execution_type(metadata_store_pb2.ExecutionType(name="Trainer"))

    def artifact(self, kind, **custom):
        artifact = kind()
        artifact.uri = f"/artifacts/{kind.TYPE_NAME}/{len(custom)}"
        for name, value in custom.items():
            artifact.set_int_custom_property(name, value)
        type_id = self.store.put_artifact_type(artifact.artifact_type)
        artifact.type_id = type_id
        artifact.artifact_type.id = type_id
        [artifact.id] = self.store.put_artifacts([artifact.mlmd_artifact])
        return artifact

    def made(self, output, examples, key="examples"):
        """Records an execution that read `examples` (as `key`) and wrote `output`."""
        execution = metadata_store_pb2.Execution(type_id=self.execution_type)
        events = []
        for artifact, kind, event_key in ((examples, "INPUT", key), (output, "OUTPUT", "model")):
            event = metadata_store_pb2.Event(type=getattr(metadata_store_pb2.Event, kind))
            event.path.steps.add().key = event_key
            events.append((artifact.mlmd_artifact, event))
        self.store.put_execution(execution, events, [])

    def bless(self, model, blessed=1):
        blessing = self.artifact(standard_artifacts.ModelBlessing)
        blessing.set_int_custom_property("blessed", blessed)
        blessing.set_int_custom_property("current_model_id", model.id)
        self.store.put_artifacts([blessing.mlmd_artifact])


def _resolve(store, current, candidates, **config):
    resolved = BuildOn(**config).resolve_artifacts(
        store.store, {EXAMPLES_KEY: [current], CANDIDATES_KEY: candidates}
    )
    assert resolved[EXAMPLES_KEY] == [current]
    return [a.id for a in resolved[CANDIDATES_KEY]]


def test_the_newest_model_made_from_other_examples(tmp_path):
    store = Store(tmp_path / "metadata.sqlite")
    span1, span2 = store.artifact(standard_artifacts.Examples), store.artifact(standard_artifacts.Examples)
    first, second = store.artifact(standard_artifacts.Model), store.artifact(standard_artifacts.Model)
    store.made(first, span1)
    store.made(second, span2)
    # A run on span 2 again continues from what span 1 made, as the first run on span 2 did.
    assert _resolve(store, span2, [first, second]) == [first.id]
    # A run on new data continues from the newest.
    span3 = store.artifact(standard_artifacts.Examples)
    assert _resolve(store, span3, [first, second]) == [second.id]
    # The first run on span 1 had nothing to build on; neither has its rerun.
    assert _resolve(store, span1, [first]) == []


def test_warm_start_takes_only_blessed_models(tmp_path):
    store = Store(tmp_path / "metadata.sqlite")
    span1, span2 = store.artifact(standard_artifacts.Examples), store.artifact(standard_artifacts.Examples)
    blessed, rejected = store.artifact(standard_artifacts.Model), store.artifact(standard_artifacts.Model)
    store.made(blessed, span1)
    store.made(rejected, span1)
    store.bless(blessed)
    store.bless(rejected, blessed=0)
    new = store.artifact(standard_artifacts.Examples)
    assert _resolve(store, new, [blessed, rejected], blessed_only=True) == [blessed.id]
    assert _resolve(store, new, [blessed, rejected]) == [rejected.id]
    assert _resolve(store, span2, [rejected], blessed_only=True) == []


def test_the_vocabulary_is_the_trained_one_of_its_version(tmp_path):
    store = Store(tmp_path / "metadata.sqlite")
    span1, span2, span3 = (store.artifact(standard_artifacts.Examples) for _ in range(3))
    trained = store.artifact(SentencePieceModel, vocabulary_version=1, reused=0)
    copied = store.artifact(SentencePieceModel, vocabulary_version=1, reused=1)
    version2 = store.artifact(SentencePieceModel, vocabulary_version=2, reused=0)
    store.made(trained, span1)
    store.made(copied, span2)
    store.made(version2, span2)
    # Copies are never the source: every later run resolves the vocabulary as it was trained.
    assert _resolve(store, span3, [trained, copied, version2], vocabulary_version=1) == [trained.id]
    assert _resolve(store, span2, [trained, copied, version2], vocabulary_version=1) == [trained.id]
    assert _resolve(store, span3, [trained, copied, version2], vocabulary_version=2) == [version2.id]
    # Version 2 was trained on span 2: a rerun there trains (from the cache) as it did.
    assert _resolve(store, span2, [trained, copied, version2], vocabulary_version=2) == []
    assert _resolve(store, span3, [trained, copied], vocabulary_version=3) == []
