"""What a person sees of a local run: a line as each component starts and ends (ran or cached, seconds,
and the figure it is there for), training progress, a summary, and on failure the component and the error.

Everything else that the libraries print (TensorFlow's C++ logging, which writes to file descriptor 2
itself, Beam, absl, Python warnings) goes to `<output_dir>/logs/run-<UTC time>.log` for the run's
duration (`output_to_file`); `verbose` leaves it on the console as before.

The component lines come from ML Metadata, the record the run keeps anyway: `RunMonitor` reads the
SQLite store (read-only) twice a second from a background thread and prints each node's executions as
their state changes, with figures read from their output artifacts. Training progress comes from the
Trainers' progress file (components/trainer/progress.py), named by CLINICAL_ALBERT_PROGRESS. Neither can stop
the run: a poll that fails is logged and tried again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

from pipeline.component_figures import CARD_FILE, FIGURES, MODEL_CARD_KEY

LOG_DIR = "logs"
#: The environment variable naming the progress file (components/trainer/progress.py reads it; not imported
#: from there because that imports Keras, and nothing heavy may load before the output is redirected).
PROGRESS_ENV = "CLINICAL_ALBERT_PROGRESS"
POLL_S = 0.5
#: The least seconds between two progress lines of one node when they cannot be rewritten in place.
PROGRESS_EVERY_S = 10.0
MAX_ERROR_CHARS = 300

#: ML Metadata's execution states, as the console names them.
STATUS = {"COMPLETE": "ran", "CACHED": "cached", "FAILED": "failed", "CANCELED": "canceled"}
STARTED = ("NEW", "RUNNING")
NOT_RUN = "not run"


class PipelineFailed(RuntimeError):
    """A local run stopped with an error; the console has said where and why, the log holds the rest.

    node: the component whose execution failed (or was running), None when none had started.
    log_path: the run's log file (None with `verbose`, where the traceback went to the console).
    """

    def __init__(self, message: str, node: str | None, log_path: str | None):
        super().__init__(message)
        self.node = node
        self.log_path = log_path


# -- where the output goes ---------------------------------------------------------------------------


def new_log_path(output_dir: str, now: datetime.datetime | None = None) -> str:
    """`<output_dir>/logs/run-<UTC time>.log`, one file per run."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return os.path.join(output_dir, LOG_DIR, f"run-{now.strftime('%Y%m%dT%H%M%SZ')}.log")


def progress_path(log_path: str) -> str:
    """The progress file that goes with a log file."""
    return re.sub(r"\.log$", "", log_path) + ".progress.jsonl"


@contextlib.contextmanager
def output_to_file(log_path: str) -> Iterator[TextIO]:
    """Sends file descriptors 1 and 2, `sys.stdout`/`sys.stderr`, Python warnings and absl logging (at
    INFO, the level TFX says what it runs at) to `log_path` until the block ends, however it ends.

    Yields a stream on the real standard output (a duplicate of descriptor 1 made first), for the
    console's own lines. Descriptors, not only Python's streams, are redirected because TensorFlow's
    C++ logging and child processes write to descriptor 2 directly.
    """
    from absl import logging as absl_logging

    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with (
        open(log_path, "a", buffering=1, encoding="utf-8", errors="replace") as log,
        os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace") as console,
    ):
        saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
        saved_streams = sys.stdout, sys.stderr
        saved_showwarning = warnings.showwarning
        absl_handler = absl_logging.get_absl_handler()
        handler_installed = absl_handler in logging.root.handlers
        saved_handler_stream = absl_handler.python_handler.stream
        saved_verbosity = absl_logging.get_verbosity()
        try:
            for fd in saved_fds:
                os.dup2(log.fileno(), fd)
            sys.stdout = sys.stderr = log
            warnings.showwarning = _warnings_to(log)
            absl_logging.use_absl_handler()
            absl_handler.python_handler.setStream(log)
            absl_logging.set_verbosity(absl_logging.INFO)
            yield console
        finally:
            for stream in (sys.stdout, sys.stderr, log, console):
                with contextlib.suppress(Exception):
                    stream.flush()
            sys.stdout, sys.stderr = saved_streams
            for fd, saved in saved_fds.items():
                os.dup2(saved, fd)
                os.close(saved)
            warnings.showwarning = saved_showwarning
            absl_handler.python_handler.setStream(saved_handler_stream)
            absl_logging.set_verbosity(saved_verbosity)
            if not handler_installed:
                logging.root.removeHandler(absl_handler)


def _warnings_to(stream: TextIO) -> Callable[..., None]:
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    return show


@contextlib.contextmanager
def environment(name: str, value: str) -> Iterator[None]:
    """Sets an environment variable for the block (the components run in this process and read it)."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


class Console:
    """The run's own lines. On a terminal, a progress line is rewritten in place until the next line."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._lock = threading.Lock()
        self._status_shown = False

    @property
    def tty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def line(self, text: str = "") -> None:
        with self._lock:
            self._clear_status()
            self.stream.write(text + "\n")
            self.stream.flush()

    def status(self, text: str) -> None:
        """A line that the next one replaces on a terminal (progress); a plain line elsewhere."""
        with self._lock:
            if self.tty:
                self.stream.write("\r\x1b[K" + text)
                self._status_shown = True
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[K")
            self._status_shown = False


# -- progress ----------------------------------------------------------------------------------------


def read_progress(path: str, offset: int) -> tuple[list[dict], int]:
    """The progress records written after byte `offset`, and the offset to read from next. A line not
    yet ended is left for the next read; a line that is not JSON is skipped."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "node" in record and "step" in record:
                records.append(record)
    return records, offset + end


def format_duration(seconds: float) -> str:
    """As a person reads a time left: `2 s`, `27 min`, `2 h 5 min`."""
    if seconds < 59.5:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def format_progress(node: str, first: Mapping[str, Any], last: Mapping[str, Any]) -> str:
    """`  pretrain  step 120/200  41.2 steps/s  about 2 s left  loss 7.12`: the rate from `first` to
    `last` (two records of one fit), the time left at that rate."""
    step, total = last["step"], last.get("total")
    parts = [f"step {step}/{total}" if total else f"step {step}"]
    elapsed = last["time"] - first["time"]
    rate = (step - first["step"]) / elapsed if elapsed > 0 else 0.0
    if rate > 0:
        parts.append(f"{rate:.3g} steps/s")
        if total and total > step:
            parts.append(f"about {format_duration((total - step) / rate)} left")
    if last.get("loss") is not None:
        parts.append(f"loss {last['loss']:.3g}")
    return f"  {node}  " + "  ".join(parts)


# -- the monitor -------------------------------------------------------------------------------------


@dataclasses.dataclass
class NodeRun:
    """What the console knows of one node in this run. status: not run, running, ran, cached, failed,
    canceled; outputs: the execution's output artifacts (ML Metadata protos) by output key."""

    node: str
    status: str = NOT_RUN
    seconds: float | None = None
    figure: str = ""
    outputs: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    started: bool = False
    execution_id: int | None = None
    created_ms: int | None = None


class RunMonitor:
    """Prints each node's start and end as ML Metadata records them, and the Trainers' progress.

    metadata_path: the run's SQLite store (it may not exist yet: the runner creates it).
    nodes: the pipeline's node ids, in the order of the summary.
    progress_file: the file the Trainers' ProgressFile callbacks append to (None: no progress lines).
    main_metric: the Evaluator's headline metric (`headline_metric`).
    Only executions created since `start()` are this run's. `start()` polls from a daemon thread every
    `poll_s` seconds; `stop()` ends it and polls once more, so every end line is out before a summary.
    """

    def __init__(
        self,
        metadata_path: str,
        pipeline_name: str,
        nodes: Sequence[str],
        console: Console,
        progress_file: str | None = None,
        main_metric: str | None = None,
        poll_s: float = POLL_S,
        progress_every_s: float = PROGRESS_EVERY_S,
    ):
        self.metadata_path = metadata_path
        self.pipeline_name = pipeline_name
        self.console = console
        self.progress_file = progress_file
        self.main_metric = main_metric
        self.poll_s = poll_s
        self.progress_every_s = progress_every_s
        self.runs = {node: NodeRun(node) for node in nodes}
        self.width = max((len(node) for node in nodes), default=0)
        self.since_ms = int(time.time() * 1000)
        self._store = None
        self._node_of: dict[int, str | None] = {}
        self._progress_offset = 0
        self._progress: dict[str, tuple[dict, dict]] = {}
        self._progress_shown: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._problems: set[str] = set()

    def start(self) -> None:
        self.since_ms = int(time.time() * 1000)
        self._thread = threading.Thread(target=self._loop, name="run-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._safe_poll()

    def __enter__(self) -> RunMonitor:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def end_running(self, status: str) -> None:
        """Ends the nodes still running with `status` (the run stopped while they ran: a driver that
        raised leaves its execution RUNNING in ML Metadata) and prints their end lines."""
        for run in self.runs.values():
            if run.status == "running":
                run.status = status
                if run.created_ms is not None:
                    run.seconds = max(0.0, time.time() - run.created_ms / 1000)
                self.console.line(end_line(run, self.width))

    def failed_node(self) -> str | None:
        """The node whose execution failed, else one still running, else None."""
        for status in ("failed", "canceled", "running", "stopped"):
            for run in self.runs.values():
                if run.status == status:
                    return run.node
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._safe_poll()

    def _safe_poll(self) -> None:
        try:
            self.poll()
        except Exception as error:  # the run goes on without its console lines rather than stop
            self._store = None
            problem = f"{type(error).__name__}: {error}"
            if problem not in self._problems:
                self._problems.add(problem)
                logging.getLogger(__name__).warning("run monitor: %s", problem)

    def poll(self, now: float | None = None) -> None:
        """Reads ML Metadata and the progress file once; prints what changed (`now`: the clock that
        spaces progress lines)."""
        self._poll_metadata()
        if self.progress_file:
            self._poll_progress(time.time() if now is None else now)

    def _connect(self):
        if self._store is None and os.path.exists(self.metadata_path):
            from ml_metadata import metadata_store
            from ml_metadata.proto import metadata_store_pb2

            connection = metadata_store_pb2.ConnectionConfig()
            connection.sqlite.filename_uri = self.metadata_path
            connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
            self._store = metadata_store.MetadataStore(connection)
        return self._store

    def _poll_metadata(self) -> None:
        store = self._connect()
        if store is None:
            return
        from ml_metadata import metadata_store
        from ml_metadata.proto import metadata_store_pb2

        recent = metadata_store.ListOptions(filter_query=f"create_time_since_epoch >= {self.since_ms}")
        for execution in sorted(store.get_executions(list_options=recent), key=lambda e: e.id):
            node = self._node(store, execution.id)
            if node is None:
                continue
            state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
            self._update(node, store, execution, state)

    def _node(self, store, execution_id: int) -> str | None:
        if execution_id not in self._node_of:
            prefix = f"{self.pipeline_name}."
            names = [
                c.name[len(prefix) :]
                for c in store.get_contexts_by_execution(execution_id)
                if c.type == "node" and c.name.startswith(prefix)
            ]
            self._node_of[execution_id] = names[0] if names else None
        return self._node_of[execution_id]

    def _update(self, node: str, store, execution, state: str) -> None:
        run = self.runs.get(node)
        if run is not None and run.execution_id is not None:
            if execution.id < run.execution_id:
                return  # the node has a newer execution
            if execution.id == run.execution_id and run.status in STATUS.values():
                return  # its end is already printed
        if run is None or run.execution_id != execution.id:
            run = self.runs[node] = NodeRun(
                node, execution_id=execution.id, created_ms=execution.create_time_since_epoch
            )
            self.width = max(self.width, len(node))
        status = STATUS.get(state)
        # A node seen while it runs gets a start line; one that ended between two polls (a cached node,
        # a resolver) only its end line, which says all a start line would.
        if state in STARTED and not run.started:
            run.started, run.status = True, "running"
            self.console.line(f"  {run.node:<{self.width}}  started")
        if status is None:
            return
        run.status = status
        run.seconds = max(
            0.0, (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        )
        run.outputs = self._outputs(store, execution.id)
        if status in ("ran", "cached") and run.node in FIGURES:
            try:
                run.figure = FIGURES[run.node](run.outputs, self.main_metric)
            except Exception as error:  # a figure that cannot be read is left out, and said in the log
                logging.getLogger(__name__).warning("%s: figure not read: %s", run.node, error)
        self.console.line(end_line(run, self.width))

    @staticmethod
    def _outputs(store, execution_id: int) -> dict[str, list[Any]]:
        events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type == e.OUTPUT]
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        outputs: dict[str, list[Any]] = {}
        for event in events:
            key = next((s.key for s in event.path.steps if s.HasField("key")), "")
            if event.artifact_id in artifacts:
                outputs.setdefault(key, []).append(artifacts[event.artifact_id])
        return outputs

    def _poll_progress(self, now: float) -> None:
        records, self._progress_offset = read_progress(self.progress_file, self._progress_offset)
        fresh = set()
        for record in records:
            node = str(record["node"])
            first, last = self._progress.get(node, (record, record))
            if record["step"] < last["step"]:  # a new fit of the node
                first = record
            self._progress[node] = (first, record)
            fresh.add(node)
        for node in sorted(fresh):
            first, last = self._progress[node]
            run = self.runs.get(node)
            total = last.get("total")
            if run is None or run.status != "running" or last is first or (total and last["step"] >= total):
                continue
            if not self.console.tty and now - self._progress_shown.get(node, 0.0) < self.progress_every_s:
                continue
            self._progress_shown[node] = now
            self.console.status(format_progress(node, first, last))


# -- lines -------------------------------------------------------------------------------------------


def end_line(run: NodeRun, width: int) -> str:
    seconds = f"{run.seconds:.1f} s" if run.seconds is not None else ""
    text = f"  {run.node:<{width}}  {run.status:<7} {seconds:>8}"
    return f"{text}  {run.figure}" if run.figure else text


def summary_lines(runs: Sequence[NodeRun]) -> list[str]:
    """The table: component, ran/cached (or failed, not run), seconds, figure."""
    width = max([len("component"), *(len(run.node) for run in runs)])
    lines = [f"{'component':<{width}}  {'result':<7}  {'seconds':>7}  figure"]
    for run in runs:
        seconds = f"{run.seconds:.1f}" if run.seconds is not None else ""
        lines.append(f"{run.node:<{width}}  {run.status:<7}  {seconds:>7}  {run.figure}".rstrip())
    return lines


def one_line_error(error: BaseException) -> str:
    """`ValueError: the first line of its message` (its cause's when it has no message of its own)."""
    while not str(error).strip() and error.__cause__ is not None:
        error = error.__cause__
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def failure_lines(error: BaseException, node: str | None, log_path: str | None) -> list[str]:
    """Which component failed (or was running), the error in one line, and where the traceback is."""
    if isinstance(error, KeyboardInterrupt):
        first = f"pipeline interrupted {f'during {node}' if node else 'before any component ran'}"
    else:
        where = f"in {node}" if node else "before any component ran"
        first = f"pipeline failed {where}: {one_line_error(error)}"
    return [first, f"full traceback: {log_path}" if log_path else "traceback above"]


class LocalRunConsole:
    """The console of one local run, as a context manager around the run.

    On entry the output goes to the run's log file (unless `verbose`) and the progress file is named in
    the environment; `watch(nodes, main_metric)` starts the monitor once the pipeline is built. On a
    clean exit, `finish(pushed)` prints the summary. On an exception, the traceback goes to the log,
    the output is restored, the summary and the failure are printed, and PipelineFailed is raised from
    the error (a KeyboardInterrupt is re-raised as it is).
    """

    def __init__(
        self,
        output_dir: str,
        metadata_path: str,
        pipeline_name: str,
        verbose: bool = False,
        poll_s: float = POLL_S,
    ):
        self.metadata_path = metadata_path
        self.pipeline_name = pipeline_name
        self.verbose = verbose
        self.poll_s = poll_s
        path = new_log_path(output_dir)
        self.log_path = None if verbose else path
        self.progress_path = progress_path(path)
        self.console = Console(sys.stdout)
        self.monitor: RunMonitor | None = None
        self._exits = contextlib.ExitStack()

    def __enter__(self) -> LocalRunConsole:
        os.makedirs(os.path.dirname(self.progress_path), exist_ok=True)
        with contextlib.ExitStack() as exits:  # unwinds what was entered if a later step fails
            if self.log_path:
                self.console = Console(exits.enter_context(output_to_file(self.log_path)))
            exits.enter_context(environment(PROGRESS_ENV, self.progress_path))
            self._exits = exits.pop_all()
        return self

    def watch(self, nodes: Sequence[str], main_metric: str | None = None) -> None:
        where = f"; library output in {self.log_path}" if self.log_path else ""
        self.console.line(f"{self.pipeline_name}: {len(nodes)} components{where}")
        self.monitor = RunMonitor(
            self.metadata_path,
            self.pipeline_name,
            nodes,
            self.console,
            progress_file=self.progress_path,
            main_metric=main_metric,
            poll_s=self.poll_s,
        )
        self.monitor.start()

    def __exit__(self, kind, error, tb) -> bool:
        node = None
        try:
            if self.monitor is not None:
                self.monitor.stop()
                node = self.monitor.failed_node()
                if error is not None:
                    self.monitor.end_running("failed" if isinstance(error, Exception) else "stopped")
            if error is not None:
                traceback.print_exception(kind, error, tb, file=sys.stderr)
        finally:
            self._exits.close()
            self.console = Console(sys.stdout)
        if error is None:
            return False
        self._print_table()
        for line in failure_lines(error, node, self.log_path):
            self.console.line(line)
        if isinstance(error, Exception):
            raise PipelineFailed(one_line_error(error), node, self.log_path) from error
        return False

    def finish(self, pushed: str | None) -> None:
        """The summary table, then where the pushed model, the model card, the log and ML Metadata are."""
        self._print_table()
        card = self.monitor.runs.get("ModelCard") if self.monitor else None
        cards = (card.outputs.get(MODEL_CARD_KEY) or []) if card else []
        self.console.line(f"pushed model: {pushed or 'nothing pushed (not blessed)'}")
        self.console.line(f"model card: {os.path.join(cards[0].uri, CARD_FILE) if cards else 'none'}")
        if self.log_path:
            self.console.line(f"log: {self.log_path}")
        self.console.line(f"ML Metadata: {self.metadata_path}")

    def _print_table(self) -> None:
        if self.monitor is None:
            return
        self.console.line()
        for line in summary_lines(list(self.monitor.runs.values())):
            self.console.line(line)
