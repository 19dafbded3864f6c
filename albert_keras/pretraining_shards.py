"""Pretraining instances in Parquet shards: what the pipeline's Beam step writes and the Trainers read
without TensorFlow.

One row per instance (`pretraining_data.Instance`), unpadded:

    document_key  int64         the document's content hash (`pretraining_data.document_key`)
    index         int32         the instance's place among its document's instances
    tokens        list<int32>   [CLS] A [SEP] B [SEP] after masking
    a_length      int32         tokens of [CLS] A [SEP]: segment 0
    positions     list<int32>   masked positions, ascending
    labels        list<int32>   the original ids at those positions
    sop_label     int32         1 when A and B are swapped

The schema's metadata records the lengths the instances were made for (`max_seq_length`,
`max_predictions_per_seq`), so a reader asked for other lengths refuses the file by name instead of
failing inside a training step. Parquet through pyarrow: columnar, compressed, readable on any machine
that has pyarrow (the GPU images have it, TensorFlow or not), and written by Beam's `WriteToParquet`.

Reading (`ShardReader`) pads rows into the batches `AlbertPretrainer.fit` takes, vectorized from
pyarrow's list offsets and values, in a deterministic order: epoch e reads the files in a permutation
seeded by (seed, e), in consecutive windows of `shuffle_window` rows, each window permuted by
(seed, e, window). Epochs follow one another as one stream that batches are cut from, so batch k
starts at row k * batch_size of it: resuming at step k locates that row from the files' row counts
and reads only the window holding it. A background thread decodes batches into a bounded queue;
memory is the current window's unpadded rows plus the queued batches.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from albert_keras.pretraining_data import Instance, split_features_and_targets

MAX_SEQ_LENGTH_KEY = b"max_seq_length"
MAX_PREDICTIONS_KEY = b"max_predictions_per_seq"
#: Rows per row group that `write_shard` writes: a few MB at seq 512, a fraction of a shuffle window.
ROW_GROUP_ROWS = 8192
#: Rows a reader holds and permutes at a time (`ShardReader`'s default): at most 134 MB of ids at seq 512.
SHUFFLE_WINDOW = 65536
#: The columns a reader needs (document_key and index identify an instance; batches do not carry them).
_READ_COLUMNS = ("tokens", "a_length", "positions", "labels", "sop_label")


def schema(max_seq_length: int, max_predictions_per_seq: int):
    """The rows' pyarrow schema, with the instance lengths in its metadata."""
    import pyarrow as pa

    return pa.schema(
        [
            ("document_key", pa.int64()),
            ("index", pa.int32()),
            ("tokens", pa.list_(pa.int32())),
            ("a_length", pa.int32()),
            ("positions", pa.list_(pa.int32())),
            ("labels", pa.list_(pa.int32())),
            ("sop_label", pa.int32()),
        ],
        metadata={
            MAX_SEQ_LENGTH_KEY: str(max_seq_length).encode(),
            MAX_PREDICTIONS_KEY: str(max_predictions_per_seq).encode(),
        },
    )


def instance_row(instance: Instance) -> dict:
    """One instance as a row of `schema` (plain Python values, as Beam's Parquet sink takes them)."""
    return {
        "document_key": int(instance.document_key),
        "index": int(instance.index),
        "tokens": np.asarray(instance.tokens, np.int32).tolist(),
        "a_length": int(instance.a_length),
        "positions": np.asarray(instance.positions, np.int32).tolist(),
        "labels": np.asarray(instance.labels, np.int32).tolist(),
        "sop_label": int(instance.sop_label),
    }


def _input_file(path: str):
    """A pyarrow input file: local paths directly, URIs with a scheme (gs://, s3://) through
    `pyarrow.fs.FileSystem.from_uri`."""
    import pyarrow.fs

    if "://" in path:
        filesystem, inner = pyarrow.fs.FileSystem.from_uri(path)
    else:
        filesystem, inner = pyarrow.fs.LocalFileSystem(), path
    return filesystem.open_input_file(inner)


def write_shard(
    instances: Iterable[Instance], path: str, max_seq_length: int, max_predictions_per_seq: int
) -> int:
    """Writes instances to one Parquet file of `schema` in row groups of `ROW_GROUP_ROWS`; returns the
    row count. An instance longer than the lengths the metadata records is refused by its place."""
    import pyarrow.fs
    import pyarrow.parquet as pq

    rows_schema = schema(max_seq_length, max_predictions_per_seq)
    if "://" in path:
        filesystem, where = pyarrow.fs.FileSystem.from_uri(path)
    else:
        filesystem, where = None, path
    count = 0
    instances = iter(instances)
    with pq.ParquetWriter(where, rows_schema, filesystem=filesystem) as writer:
        while chunk := list(itertools.islice(instances, ROW_GROUP_ROWS)):
            for instance in chunk:
                _check_instance(instance, path, max_seq_length, max_predictions_per_seq)
            writer.write_table(_table(chunk, rows_schema), row_group_size=ROW_GROUP_ROWS)
            count += len(chunk)
    return count


def _check_instance(instance: Instance, path: str, max_seq_length: int, max_predictions_per_seq: int) -> None:
    where = f"{path}: instance {instance.index} of document {instance.document_key}"
    if len(instance.tokens) > max_seq_length:
        raise ValueError(f"{where} has {len(instance.tokens)} tokens; max_seq_length is {max_seq_length}")
    if len(instance.positions) != len(instance.labels):
        raise ValueError(f"{where} has {len(instance.positions)} positions but {len(instance.labels)} labels")
    if len(instance.positions) > max_predictions_per_seq:
        raise ValueError(
            f"{where} has {len(instance.positions)} masked positions; "
            f"max_predictions_per_seq is {max_predictions_per_seq}"
        )


def _table(instances: Sequence[Instance], rows_schema):
    """Instances as a pyarrow table of `rows_schema`, list columns built from offsets and values."""
    import pyarrow as pa

    def scalars(name: str, dtype) -> np.ndarray:
        return np.array([getattr(instance, name) for instance in instances], dtype)

    def lists(name: str):
        arrays = [np.asarray(getattr(instance, name), np.int32) for instance in instances]
        offsets = np.zeros(len(arrays) + 1, np.int32)
        np.cumsum([len(a) for a in arrays], out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(arrays)))

    columns = [
        pa.array(scalars("document_key", np.int64)),
        pa.array(scalars("index", np.int32)),
        lists("tokens"),
        pa.array(scalars("a_length", np.int32)),
        lists("positions"),
        lists("labels"),
        pa.array(scalars("sop_label", np.int32)),
    ]
    return pa.Table.from_arrays(columns, schema=rows_schema)


def _footer(path: str):
    """The file's Parquet metadata (its footer; no rows are read), and the lengths it records."""
    import pyarrow.parquet as pq

    with _input_file(path) as f:
        metadata = pq.read_metadata(f)
    recorded = metadata.metadata or {}
    missing = [key.decode() for key in (MAX_SEQ_LENGTH_KEY, MAX_PREDICTIONS_KEY) if key not in recorded]
    if missing:
        raise ValueError(
            f"{path}: no {' and no '.join(missing)} in the file's metadata; "
            "pretraining shards record the lengths their instances were made for (see `schema`)"
        )
    try:
        lengths = int(recorded[MAX_SEQ_LENGTH_KEY]), int(recorded[MAX_PREDICTIONS_KEY])
    except ValueError:
        raise ValueError(
            f"{path}: the metadata's lengths are not integers: {recorded[MAX_SEQ_LENGTH_KEY]!r}, "
            f"{recorded[MAX_PREDICTIONS_KEY]!r}"
        ) from None
    return metadata, lengths


def shard_info(path: str) -> tuple[int, int, int]:
    """(max_seq_length, max_predictions_per_seq, num_rows) of a shard, from its footer alone."""
    metadata, (max_seq_length, max_predictions_per_seq) = _footer(path)
    return max_seq_length, max_predictions_per_seq, metadata.num_rows


@dataclasses.dataclass(frozen=True)
class _Rows:
    """Unpadded rows as flat numpy arrays; row i's tokens are tokens[token_offsets[i]:token_offsets[i+1]],
    its positions and labels likewise at prediction_offsets."""

    tokens: np.ndarray
    token_offsets: np.ndarray
    a_length: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    prediction_offsets: np.ndarray
    sop_label: np.ndarray


def _copy_list(column, values: np.ndarray, offsets: np.ndarray, row: int) -> None:
    """A list<int32> column's rows into `values` and `offsets` from `row` on (offsets[row] is where its
    values begin), chunk by chunk."""
    at = int(offsets[row])
    for chunk in column.chunks:
        flat = chunk.flatten()  # the chunk's own values (`chunk.values` ignores a slice)
        values[at : at + len(flat)] = flat.to_numpy()
        offsets[row + 1 : row + 1 + len(chunk)] = at + np.cumsum(np.diff(chunk.offsets.to_numpy()))
        row, at = row + len(chunk), at + len(flat)


class ShardReader:
    """Batches for `AlbertPretrainer.fit` from Parquet shards, in a seeded, resumable order.

    Every file's metadata is checked at construction, so lengths that do not match the model's are an
    error naming the file before training starts. See the module docstring for the order; `batches`
    yields (x, y) dicts of numpy arrays equal to stacking `pretraining_data.padded` instances.
    `prefetch` counts batches: 32 of 64 x 512 are about 13 MB and 1.7 s of one H100's steps, which
    covers the pause while the next window is read (bench/input_pipeline.py prints it).
    """

    def __init__(
        self,
        files: Sequence[str],
        max_seq_length: int,
        max_predictions_per_seq: int,
        batch_size: int,
        *,
        pad_id: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_window: int = SHUFFLE_WINDOW,
        prefetch: int = 32,
    ):
        for name, value in (
            ("max_seq_length", max_seq_length),
            ("max_predictions_per_seq", max_predictions_per_seq),
            ("batch_size", batch_size),
            ("shuffle_window", shuffle_window),
            ("prefetch", prefetch),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, received {value}")
        if not files:
            raise ValueError("ShardReader needs at least one file; received none")
        self.files = [str(path) for path in files]
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_window = shuffle_window
        self.prefetch = prefetch
        # Per file: the first row of each row group, then the row count (row ranges -> row groups).
        self._group_starts: list[np.ndarray] = []
        for path in self.files:
            metadata, lengths = _footer(path)
            if lengths != (max_seq_length, max_predictions_per_seq):
                raise ValueError(
                    f"{path}: instances were made for max_seq_length {lengths[0]} and "
                    f"max_predictions_per_seq {lengths[1]}; expected {max_seq_length} and "
                    f"{max_predictions_per_seq}"
                )
            group_rows = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
            self._group_starts.append(np.concatenate([[0], np.cumsum(group_rows, dtype=np.int64)]))
        self._file_rows = np.array([starts[-1] for starts in self._group_starts], np.int64)
        self.num_instances = int(self._file_rows.sum())
        if not self.num_instances:
            raise ValueError(f"ShardReader: the {len(self.files)} files hold no instances: {self.files}")

    def batches(self, start_step: int = 0, repeat: bool = True) -> Iterator[tuple[dict, dict]]:
        """(x, y) batches from batch `start_step` on, decoded ahead by a background thread.

        repeat=True: an endless stream of full batches over epoch after epoch. repeat=False: one
        epoch, the last batch partial (evaluation). Closing or dropping the iterator stops the thread;
        an error in the thread is raised here.
        """
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, received {start_step}")
        source = self._padded_batches(start_step * self.batch_size, repeat)
        return _prefetched(source, self.prefetch)

    # -- the order: files per epoch, windows, rows ----------------------------------------------

    def _file_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.files))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.files))

    def _window_order(self, epoch: int, window: int, size: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(size)
        return np.random.default_rng([self.seed, epoch, window]).permutation(size)

    def _windows(self, start: int, repeat: bool) -> Iterator[tuple[_Rows, np.ndarray]]:
        """(rows of a window, the window's row order) from stream row `start` on; the first window's
        order is cut to begin at `start`. Skipped epochs, files and windows are never read."""
        epoch, offset = divmod(start, self.num_instances)
        window_count = -(-self.num_instances // self.shuffle_window)
        while repeat or epoch == 0:
            files = self._file_order(epoch)
            file_starts = np.concatenate([[0], np.cumsum(self._file_rows[files])])
            first, skip = divmod(offset, self.shuffle_window)
            for window in range(first, window_count):
                low = window * self.shuffle_window
                high = min(low + self.shuffle_window, self.num_instances)
                rows = self._read(files, file_starts, low, high)
                yield rows, self._window_order(epoch, window, high - low)[skip:]
                del rows  # before the next window is read: one window in memory at a time
                skip = 0
            epoch, offset = epoch + 1, 0

    def _read(self, files: np.ndarray, file_starts: np.ndarray, low: int, high: int) -> _Rows:
        """Stream rows [low, high) of an epoch whose files are in the order `files`.

        The pieces are decoded first, then copied into arrays sized for them all, each piece released
        once copied: building a window holds about one window's rows, not two."""
        pieces = []
        for i in np.flatnonzero((file_starts[:-1] < high) & (file_starts[1:] > low)):
            first = max(low, file_starts[i]) - file_starts[i]
            end = min(high, file_starts[i + 1]) - file_starts[i]
            pieces.append(self._read_file(int(files[i]), int(first), int(end)))

        def value_count(name: str) -> int:
            return sum(len(chunk.flatten()) for _, table in pieces for chunk in table[name].chunks)

        count = high - low
        rows = _Rows(
            tokens=np.empty(value_count("tokens"), np.int32),
            token_offsets=np.zeros(count + 1, np.int64),
            a_length=np.empty(count, np.int32),
            positions=np.empty(value_count("positions"), np.int32),
            labels=np.empty(value_count("labels"), np.int32),
            prediction_offsets=np.zeros(count + 1, np.int64),
            sop_label=np.empty(count, np.int32),
        )
        label_offsets = np.zeros(count + 1, np.int64)
        row = 0
        while pieces:
            path, table = pieces.pop(0)
            end = row + table.num_rows
            _copy_list(table["tokens"], rows.tokens, rows.token_offsets, row)
            _copy_list(table["positions"], rows.positions, rows.prediction_offsets, row)
            _copy_list(table["labels"], rows.labels, label_offsets, row)
            rows.a_length[row:end] = table["a_length"].to_numpy()
            rows.sop_label[row:end] = table["sop_label"].to_numpy()
            del table
            self._check_lengths(path, rows, label_offsets, row, end)
            row = end
        return rows

    def _read_file(self, index: int, first: int, end: int) -> tuple[str, object]:
        """(path, table) of rows [first, end) of one file: the row groups that hold them, sliced."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        path, group_starts = self.files[index], self._group_starts[index]
        g0 = int(np.searchsorted(group_starts, first, side="right")) - 1
        g1 = int(np.searchsorted(group_starts, end, side="left"))
        with _input_file(path) as f:
            # pre_buffer: one coalesced read per column chunk range, what object stores need.
            parquet = pq.ParquetFile(f, pre_buffer=True)
            table = parquet.read_row_groups(range(g0, g1), columns=list(_READ_COLUMNS))
        table = table.slice(first - group_starts[g0], end - first)
        for name in _READ_COLUMNS:
            column = table[name]
            if column.null_count or (pa.types.is_list(column.type) and pc.list_flatten(column).null_count):
                raise ValueError(f"{path}: column {name!r} holds nulls")
        return path, table

    def _check_lengths(self, path: str, rows: _Rows, label_offsets: np.ndarray, row: int, end: int) -> None:
        """Rows [row, end) came from `path`: they must fit the lengths its metadata records."""
        predictions = rows.prediction_offsets[row : end + 1]
        if not np.array_equal(predictions, label_offsets[row : end + 1]):
            raise ValueError(f"{path}: a row's positions and labels differ in length")
        longest = int(np.diff(rows.token_offsets[row : end + 1]).max(initial=0))
        most = int(np.diff(predictions).max(initial=0))
        if longest > self.max_seq_length or most > self.max_predictions_per_seq:
            raise ValueError(
                f"{path}: rows of up to {longest} tokens and {most} masked positions; the metadata says "
                f"max_seq_length {self.max_seq_length} and max_predictions_per_seq "
                f"{self.max_predictions_per_seq}"
            )

    # -- padding and batching --------------------------------------------------------------------

    def _padded_batches(self, start: int, repeat: bool) -> Iterator[tuple[dict, dict]]:
        """Batches cut consecutively from the stream of window rows; a batch may span windows and
        epochs. The rows a batch takes from a window are padded at once, so an old window is dropped
        before the next is read."""
        parts: list[dict[str, np.ndarray]] = []
        filled = 0
        for rows, order in self._windows(start, repeat):
            taken = 0
            while taken < len(order):
                count = min(self.batch_size - filled, len(order) - taken)
                parts.append(self._pad(rows, order[taken : taken + count]))
                taken += count
                filled += count
                if filled == self.batch_size:
                    yield split_features_and_targets(_stacked(parts))
                    parts, filled = [], 0
            del rows, order
        if parts:
            yield split_features_and_targets(_stacked(parts))

    def _pad(self, rows: _Rows, picked: np.ndarray) -> dict[str, np.ndarray]:
        """The picked rows as fixed-length arrays, as `pretraining_data.padded` makes them."""
        seq, predictions = self.max_seq_length, self.max_predictions_per_seq
        token_ids, padding = _gather(rows.tokens, rows.token_offsets, picked, seq, self.pad_id)
        mask_positions, weights = _gather(rows.positions, rows.prediction_offsets, picked, predictions, 0)
        mlm_labels, _ = _gather(rows.labels, rows.prediction_offsets, picked, predictions, 0)
        # (batch, seq): 1 from the row's a_length to its end
        segment_ids = padding & (np.arange(seq) >= rows.a_length[picked][:, None])
        return {
            "token_ids": token_ids,
            "segment_ids": segment_ids.astype(np.int32),
            "padding_mask": padding.astype(np.int32),
            "mask_positions": mask_positions,
            "mlm_labels": mlm_labels,
            "mlm_weights": weights.astype(np.float32),
            "sop_labels": rows.sop_label[picked],
        }


def _gather(
    values: np.ndarray, offsets: np.ndarray, picked: np.ndarray, width: int, fill: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows `picked` of a flat list column as a (len(picked), width) int32 matrix padded with `fill`,
    and the boolean mask of the filled places."""
    starts = offsets[picked]
    lengths = offsets[picked + 1] - starts
    filled = np.arange(width) < lengths[:, None]  # (rows, width)
    out = np.full((len(picked), width), fill, np.int32)
    out[filled] = values[(starts[:, None] + np.arange(width))[filled]]
    return out, filled


def _stacked(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


_END = object()


def _prefetched(source: Iterator, depth: int) -> Iterator:
    """`source`'s items, produced by a background thread up to `depth` ahead into a bounded queue.

    An exception in the thread is raised in the consumer; closing (or dropping) the returned
    generator stops the thread and waits for it, so none outlives its iterator.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as error:  # handed to the consumer, which raises it
            put((None, error))
        finally:
            source.close()

    thread = threading.Thread(target=produce, name="ShardReader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()
