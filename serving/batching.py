"""Server-side batching like TF Serving's `--enable_batching`: concurrent calls merged into one model call.

Calls to the same signature of the same loaded version, whose inputs agree in dtype and in every
dimension but the first, wait in one queue. A worker thread takes the oldest batch that is full or has
waited `batch_timeout_micros`, concatenates the inputs along axis 0 (padding up to the next
`allowed_batch_sizes` entry by repeating the last row), makes one call, and hands each caller its own
rows of every output back. As in TF Serving's batching session, every output must have the merged batch
as its first dimension; one that does not fails the call with FAILED_PRECONDITION, so a signature with an
unbatched output (a list of class names, say) fails here as it would in production. As in TF Serving's
shared batch scheduler, a call bigger than `max_batch_size` is refused
with INVALID_ARGUMENT and a call that finds `max_enqueued_batches` batches already waiting is refused
with UNAVAILABLE ("queue is full"), which clients retry with backoff.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

Tensors = dict[str, np.ndarray]


class BatchTooLarge(ValueError):
    """A call with more rows than `max_batch_size` (TF Serving: INVALID_ARGUMENT)."""


class OutputNotBatched(RuntimeError):
    """A model output without the merged batch as its first dimension (TF Serving: FAILED_PRECONDITION)."""


class QueueFull(RuntimeError):
    """A call that found `max_enqueued_batches` batches waiting, or the scheduler stopped (UNAVAILABLE)."""


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's `BatchingParameters`; unset fields take TF Serving's defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must not be negative; got {self.batch_timeout_micros}")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[0] < 1 or sizes[-1] != self.max_batch_size):
            raise ValueError(
                f"allowed_batch_sizes must increase strictly and end with max_batch_size "
                f"{self.max_batch_size}; got {sizes}"
            )

    def padded_size(self, size: int) -> int:
        """The batch size a merged batch of `size` rows is padded up to."""
        return next((allowed for allowed in self.allowed_batch_sizes if allowed >= size), size)


def message_class():
    """A protobuf message with `session_bundle_config.proto`'s BatchingParameters field names and wrapper
    types (the tensorflow-serving-api wheel does not ship that module), so the text format is parsed
    exactly as TF Serving parses it. `thread_pool_name` is accepted and ignored."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="serving/batching_parameters.proto",
        package="serving.local",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = file.message_type.add(name="BatchingParameters")
    kinds = descriptor_pb2.FieldDescriptorProto
    wrapped = ["max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"]
    for number, name in enumerate(wrapped, start=1):
        message.field.add(
            name=name,
            number=number,
            label=kinds.LABEL_OPTIONAL,
            type=kinds.TYPE_MESSAGE,
            type_name=".google.protobuf.Int64Value",
        )
    message.field.add(
        name="thread_pool_name",
        number=5,
        label=kinds.LABEL_OPTIONAL,
        type=kinds.TYPE_MESSAGE,
        type_name=".google.protobuf.StringValue",
    )
    message.field.add(name="allowed_batch_sizes", number=6, label=kinds.LABEL_REPEATED, type=kinds.TYPE_INT64)
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName("serving.local.BatchingParameters")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def parse_batching_parameters(text: str, origin: str = "batching_parameters") -> BatchingParameters:
    """The parameters in a `BatchingParameters` text proto; unknown fields are refused, naming `origin`."""
    try:
        proto = text_format.Parse(text, message_class()())
    except text_format.ParseError as error:
        raise ValueError(f"{origin}: not a BatchingParameters text proto ({error})") from None
    given = {
        name: getattr(proto, name).value
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
        if proto.HasField(name)
    }
    try:
        return BatchingParameters(**given, allowed_batch_sizes=tuple(proto.allowed_batch_sizes))
    except ValueError as error:
        raise ValueError(f"{origin}: {error}") from None


def load_batching_parameters(path: str | Path) -> BatchingParameters:
    """The parameters in a `--batching_parameters_file`."""
    return parse_batching_parameters(Path(path).read_text(), origin=str(path))


class _Task:
    """One caller's inputs, waiting for its rows of the merged outputs (or an error)."""

    def __init__(self, inputs: Tensors, size: int, run: Callable[[Tensors], Tensors]):
        self.inputs = inputs
        self.size = size
        self.run = run
        self.done = threading.Event()
        self.outputs: Tensors | None = None
        self.error: Exception | None = None


class _Batch:
    def __init__(self) -> None:
        self.tasks: list[_Task] = []
        self.size = 0
        self.created = time.monotonic()
        self.closed = False


class BatchScheduler:
    """Queues per batching key, shared by every model, drained by `num_batch_threads` worker threads."""

    def __init__(self, params: BatchingParameters):
        self.params = params
        self._timeout = params.batch_timeout_micros / 1e6
        self._queues: dict[Hashable, deque[_Batch]] = {}
        self._ready = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Starts the worker threads (once)."""
        if self._threads:
            return
        for index in range(self.params.num_batch_threads):
            thread = threading.Thread(target=self._work, name=f"batch-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Runs the batches already queued, refuses new calls, and joins the workers."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def pending(self) -> int:
        """How many batches wait for a worker (a queue-length metric)."""
        with self._ready:
            return sum(len(queue) for queue in self._queues.values())

    def submit(self, key: Hashable, inputs: Tensors, run: Callable[[Tensors], Tensors]) -> Tensors:
        """Runs `run` on `inputs` merged with other calls under `key`; returns this call's rows of every
        output. Every input's first dimension is the call's batch size; calls under one key must use
        the same `run`."""
        size = len(next(iter(inputs.values())))
        if size > self.params.max_batch_size:
            raise BatchTooLarge(
                f"batch of {size} is larger than the maximum batch size {self.params.max_batch_size}"
            )
        task = _Task(inputs, size, run)
        with self._ready:
            if self._stopping or not self._threads:
                raise QueueFull("the batch scheduler is not running")
            queue = self._queues.setdefault(key, deque())
            batch = queue[-1] if queue and not queue[-1].closed else None
            if batch is None or batch.size + size > self.params.max_batch_size:
                if batch is not None:
                    batch.closed = True
                if len(queue) >= self.params.max_enqueued_batches:
                    raise QueueFull("the batch scheduling queue to which this task was submitted is full")
                batch = _Batch()
                queue.append(batch)
            batch.tasks.append(task)
            batch.size += size
            batch.closed = batch.size >= self.params.max_batch_size
            self._ready.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def _next_batch(self) -> tuple[_Batch | None, float | None]:
        """The oldest batch ready to run, else how long until one times out (None: nothing queued)."""
        now = time.monotonic()
        ready, wait = None, None
        for key, queue in self._queues.items():
            front = queue[0]
            if front.closed or self._stopping or now - front.created >= self._timeout:
                if ready is None or front.created < ready[1].created:
                    ready = (key, front)
            else:
                left = front.created + self._timeout - now
                wait = left if wait is None else min(wait, left)
        if ready is None:
            return None, wait
        key, batch = ready
        queue = self._queues[key]
        queue.popleft()
        if not queue:
            del self._queues[key]
        return batch, None

    def _work(self) -> None:
        while True:
            with self._ready:
                while True:
                    batch, wait = self._next_batch()
                    if batch is not None:
                        break
                    if self._stopping and not self._queues:
                        return
                    self._ready.wait(wait)
            self._process(batch.tasks)

    def _process(self, tasks: list[_Task]) -> None:
        try:
            self._run_merged(tasks)
        except Exception as error:  # handed to the caller, which reports it without data
            if len(tasks) == 1:
                tasks[0].error = error
            else:  # one caller's bad inputs must not fail the others: run each alone
                for task in tasks:
                    self._process([task])
        finally:
            for task in tasks:
                task.done.set()

    def _run_merged(self, tasks: list[_Task]) -> None:
        total = sum(task.size for task in tasks)
        padded = self.params.padded_size(total)
        merged = {}
        for key in tasks[0].inputs:
            value = np.concatenate([task.inputs[key] for task in tasks], axis=0)  # (total, ...)
            if padded > total:
                value = np.concatenate([value, np.repeat(value[-1:], padded - total, axis=0)], axis=0)
            merged[key] = value  # (padded, ...)
        outputs = tasks[0].run(merged)
        for key in sorted(outputs):  # TF Serving's messages, naming the output as well
            if np.ndim(outputs[key]) == 0:
                raise OutputNotBatched(f"output {key!r}: Batched output tensor has 0 dimensions")
            if len(outputs[key]) != padded:
                raise OutputNotBatched(
                    f"output {key!r}: Batched output tensor's 0th dimension does not equal the sum of "
                    "the 0th dimension sizes of the input tensors"
                )
        start = 0
        for task in tasks:
            task.outputs = {key: value[start : start + task.size] for key, value in outputs.items()}
            start += task.size
