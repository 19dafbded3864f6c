"""Parquet shards: write and read back exactly the padded instances, in a seeded order that resumes at
any step, with a prefetch thread that stops with its iterator, and no TensorFlow on the way."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from albert_keras.pretraining_data import (
    MaskingConfig,
    document_instances,
    document_key,
    padded,
    split_features_and_targets,
)
from albert_keras.pretraining_shards import ShardReader, instance_row, schema, shard_info, write_shard
from tests.albert_keras.test_pretraining_data import VOCAB, synthetic_corpus

# numpy and pyarrow only: the JAX pass skips it.
pytestmark = pytest.mark.backend_independent

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = MaskingConfig(max_seq_length=24, max_predictions_per_seq=5, dupe_factor=2)
SEQ, PREDICTIONS = CONFIG.max_seq_length, CONFIG.max_predictions_per_seq
BATCH, WINDOW = 7, 32
NAMES = (
    *("token_ids", "segment_ids", "padding_mask", "mask_positions"),
    *("mlm_labels", "mlm_weights", "sop_labels"),
)


@pytest.fixture(scope="module")
def instances():
    documents = synthetic_corpus(num_documents=80, seed=3)
    found = [
        instance
        for document in documents
        for instance in document_instances(document, document_key(document), VOCAB, CONFIG, seed=5)
    ]
    assert 150 < len(found) < 400  # several windows of WINDOW, not too slow
    return found


@pytest.fixture(scope="module")
def shards(instances, tmp_path_factory) -> list[str]:
    """Three shards of unequal sizes and an empty one, in this order."""
    folder = tmp_path_factory.mktemp("shards")
    cuts = [0, 40, 41, len(instances) - 60, len(instances)]
    paths = [str(folder / f"part-{i}.parquet") for i in range(4)]
    pieces = [instances[a:b] for a, b in itertools.pairwise(cuts)]
    pieces[1] = []  # a shard may be empty
    for path, piece in zip(paths, pieces, strict=True):
        assert write_shard(piece, path, SEQ, PREDICTIONS) == len(piece)
    return paths


def expected(instances) -> dict[str, np.ndarray]:
    rows = [padded(instance, VOCAB, CONFIG) for instance in instances]
    return {name: np.stack([row[name] for row in rows]) for name in NAMES}


def joined(batches) -> dict[str, np.ndarray]:
    """Batches as one dict of arrays, rows in stream order."""
    flat = [{**x, **y} for x, y in batches]
    return {name: np.concatenate([batch[name] for batch in flat]) for name in NAMES}


def row_keys(arrays: dict[str, np.ndarray]) -> list[bytes]:
    """Each row as bytes of all its arrays: compares rows as a multiset."""
    return [b"".join(arrays[name][i].tobytes() for name in NAMES) for i in range(len(arrays["sop_labels"]))]


def reader(shards, **kwargs) -> ShardReader:
    options = {"batch_size": BATCH, "shuffle_window": WINDOW, **kwargs}
    return ShardReader(shards, SEQ, PREDICTIONS, **options)


def take(iterator, count: int) -> list:
    batches = list(itertools.islice(iterator, count))
    iterator.close()
    return batches


def test_round_trip_gives_exactly_the_padded_instances(instances, shards):
    assert shard_info(shards[0]) == (SEQ, PREDICTIONS, 40)
    assert shard_info(shards[1]) == (SEQ, PREDICTIONS, 0)
    plain = reader(shards, shuffle=False)
    assert plain.num_instances == len(instances) - 1
    batches = list(plain.batches(repeat=False))
    assert len(batches) == -(-plain.num_instances // BATCH)
    want = expected(instances[:40] + instances[41:])
    got = joined(batches)
    for name in NAMES:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # Each batch is (x, y) as `split_features_and_targets` makes it; the last one partial.
    x, y = batches[0]
    wx, wy = split_features_and_targets({name: want[name][:BATCH] for name in NAMES})
    assert list(x) == list(wx) and list(y) == list(wy)
    assert x["token_ids"].shape == (BATCH, SEQ) and y["mlm_weights"].shape == (BATCH, PREDICTIONS)
    assert y["sop_labels"].shape == (BATCH,)
    assert len(batches[-1][1]["sop_labels"]) == plain.num_instances % BATCH
    assert len(row_keys(want)) == len(set(row_keys(want)))  # rows are distinct: the tests below rely on it


def test_uris_go_through_pyarrow_filesystems(instances, tmp_path):
    uri = (tmp_path / "uri.parquet").as_uri()  # file:///...: the path gs:// and s3:// shards take
    assert uri.startswith("file://") and write_shard(instances[:9], uri, SEQ, PREDICTIONS) == 9
    assert shard_info(uri) == (SEQ, PREDICTIONS, 9)
    got = joined(reader([uri], shuffle=False).batches(repeat=False))
    np.testing.assert_array_equal(got["token_ids"], expected(instances[:9])["token_ids"])


def test_padding_uses_the_pad_id(instances, shards):
    x, _ = next(reader([shards[3]], shuffle=False, batch_size=60, pad_id=999).batches(repeat=False))
    vocab = dataclasses.replace(VOCAB, pad_id=999)
    want = np.stack([padded(instance, vocab, CONFIG)["token_ids"] for instance in instances[-60:]])
    assert (want == 999).any()
    np.testing.assert_array_equal(x["token_ids"], want)


def test_each_epoch_is_a_seeded_permutation_read_window_by_window(instances, shards):
    total = len(instances) - 1
    steps = -(-2 * total // BATCH)
    stream = joined(take(reader(shards, seed=1).batches(), steps))
    epochs = [row_keys({k: v[i * total : (i + 1) * total] for k, v in stream.items()}) for i in range(2)]
    want = row_keys(expected(instances[:40] + instances[41:]))
    assert sorted(epochs[0]) == sorted(want) and sorted(epochs[1]) == sorted(want)
    assert epochs[0] != want and epochs[0] != epochs[1]
    # The first window holds the first WINDOW rows of the files in the epoch's seeded order.
    files = np.random.default_rng([1, 0]).permutation(len(shards))
    by_file = {0: instances[:40], 1: [], 2: instances[41:-60], 3: instances[-60:]}
    in_order = row_keys(expected([i for f in files for i in by_file[int(f)]]))
    assert sorted(epochs[0][:WINDOW]) == sorted(in_order[:WINDOW])

    again = joined(take(reader(shards, seed=1).batches(), steps))
    other = joined(take(reader(shards, seed=2).batches(), steps))
    for name in NAMES:
        np.testing.assert_array_equal(again[name], stream[name])
    assert row_keys(other) != row_keys(stream)


@pytest.mark.parametrize("shuffle", [True, False])
def test_resuming_at_a_step_yields_the_same_batches(instances, shards, shuffle):
    total = len(instances) - 1
    assert total % BATCH  # so that batch `total // BATCH` spans epochs 0 and 1
    per_epoch = total // BATCH
    full = take(reader(shards, shuffle=shuffle).batches(), 3 * per_epoch)
    # Rows 7 and 28 (mid-window 0), 35 (window 1 from its 4th row), the batch spanning epochs 0 and 1,
    # and batches in epoch 1 and at the end of epoch 1.
    for start in (1, 4, 5, per_epoch, per_epoch + 2, 2 * per_epoch):
        resumed = take(reader(shards, shuffle=shuffle).batches(start_step=start), 3)
        for (x, y), (rx, ry) in zip(full[start : start + 3], resumed, strict=True):
            for name in x:
                np.testing.assert_array_equal(rx[name], x[name], err_msg=f"step {start} {name}")
            for name in y:
                np.testing.assert_array_equal(ry[name], y[name], err_msg=f"step {start} {name}")
    one_pass = list(reader(shards, shuffle=shuffle).batches(repeat=False))
    tail = list(reader(shards, shuffle=shuffle).batches(start_step=len(one_pass) - 2, repeat=False))
    assert len(tail) == 2
    np.testing.assert_array_equal(tail[-1][0]["token_ids"], one_pass[-1][0]["token_ids"])
    assert list(reader(shards).batches(start_step=len(one_pass), repeat=False)) == []


def test_lengths_other_than_the_metadata_are_refused_by_file(shards, tmp_path):
    with pytest.raises(ValueError) as error:
        ShardReader(shards, 32, PREDICTIONS, BATCH)
    assert str(error.value) == (
        f"{shards[0]}: instances were made for max_seq_length 24 and max_predictions_per_seq 5; "
        "expected 32 and 5"
    )
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"tokens": pa.array([[1, 2]], pa.list_(pa.int32()))}), bare)
    for call in (lambda: shard_info(str(bare)), lambda: ShardReader([shards[0], str(bare)], SEQ, 5, 4)):
        with pytest.raises(ValueError, match=f"{bare}: no max_seq_length and no max_predictions_per_seq"):
            call()
    with pytest.raises(ValueError, match="at least one file"):
        ShardReader([], SEQ, PREDICTIONS, BATCH)
    with pytest.raises(ValueError, match="hold no instances"):
        ShardReader([shards[1]], SEQ, PREDICTIONS, BATCH)
    with pytest.raises(ValueError, match="batch_size must be >= 1, received 0"):
        ShardReader(shards, SEQ, PREDICTIONS, 0)


def test_write_shard_refuses_instances_longer_than_its_lengths(instances, tmp_path):
    path = str(tmp_path / "short.parquet")
    longest = max(instances, key=lambda instance: len(instance.tokens))
    with pytest.raises(ValueError, match=f"{path}: instance {longest.index} of document .* tokens; max_seq"):
        write_shard([longest], path, len(longest.tokens) - 1, PREDICTIONS)


def _prefetch_threads(before: set) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.name == "ShardReader-prefetch"]


def test_the_prefetch_thread_stops_when_the_iterator_is_closed_or_dropped(shards):
    before = set(threading.enumerate())
    batches = reader(shards, prefetch=2).batches()
    next(batches)
    threads = _prefetch_threads(before)
    assert len(threads) == 1 and threads[0].is_alive()
    batches.close()
    assert not threads[0].is_alive()

    dropped = reader(shards, prefetch=2).batches()
    next(dropped)
    threads = _prefetch_threads(before)
    del dropped  # the generator's finalizer closes it
    assert threads and not any(t.is_alive() for t in threads)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("tokens", list(range(30)), "rows of up to 30 tokens"), ("labels", None, "column 'labels' holds nulls")],
)
def test_an_error_while_decoding_reaches_the_consumer(instances, tmp_path, column, value, message):
    # The footer is fine, a row is not: found while decoding, in the thread.
    bad = tmp_path / "bad.parquet"
    rows = [instance_row(instance) for instance in instances[:3]]
    rows[1][column] = value
    pq.write_table(pa.Table.from_pylist(rows, schema=schema(SEQ, PREDICTIONS)), bad)
    before = set(threading.enumerate())
    batches = reader([str(bad)], shuffle=False).batches()
    with pytest.raises(ValueError, match=f"{bad}: {message}"):
        next(batches)
    assert not any(t.is_alive() for t in _prefetch_threads(before))


def test_a_shard_removed_after_the_check_is_an_error_in_the_consumer(instances, tmp_path):
    gone = tmp_path / "gone.parquet"
    write_shard(instances[:10], str(gone), SEQ, PREDICTIONS)
    later = reader([str(gone)])
    gone.unlink()
    with pytest.raises(FileNotFoundError):
        next(later.batches())


def test_reading_imports_no_tensorflow(shards):
    program = (
        "import sys\n"
        "from albert_keras.pretraining_shards import ShardReader\n"
        f"x, y = next(ShardReader({shards!r}, {SEQ}, {PREDICTIONS}, 4).batches())\n"
        "assert x['token_ids'].shape == (4, 24), x['token_ids'].shape\n"
        "print('tensorflow loaded:', 'tensorflow' in sys.modules)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # albert_keras imports keras; the GPU image runs JAX
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "tensorflow loaded: False"
