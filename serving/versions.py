"""Version management for the local model server: which versions are on disk, loading, served or failed.

Like TF Serving, each base path is polled; new versions load (and replay their warmup requests) before
they are served, an old version is unloaded only once a wanted one is available, and a good version
keeps serving while a newer one fails. A failed load is retried: at once when anything in the version
folder changes (a copy that put the graph down before its variables), and otherwise up to
`max_num_load_retries` times, `load_retry_interval` apart, as TF Serving's flags of those names do.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2

from serving.batching import BatchScheduler
from serving.models_config import ModelEntry
from serving.requests import Limits, RequestError
from serving.servable import ServableVersion

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State


@dataclass(frozen=True)
class LoadRetry:
    """How often a failed load is tried again with the folder unchanged (TF Serving's
    --max_num_load_retries, default 5, and --load_retry_interval_micros, default one minute)."""

    max_retries: int = 5
    interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.interval_seconds < 0:
            raise ValueError(f"load retries and their interval must not be negative; got {self}")


@dataclass
class _Failure:
    stamp: tuple
    retries: int
    next_try: float


def version_folders(base_path: str) -> dict[int, Path]:
    """`<base_path>/<integer>/` folders holding a saved_model.pb(txt); others (temp names) are skipped."""
    base = Path(base_path)
    if not base.is_dir():
        return {}
    found = {}
    for child in base.iterdir():
        has_graph = (child / "saved_model.pb").is_file() or (child / "saved_model.pbtxt").is_file()
        if child.name.isdigit() and has_graph:
            found[int(child.name)] = child
    return found


def folder_stamp(folder: Path) -> tuple:
    """Changes when any file under the version folder is added, removed or rewritten (name, size and
    modification time of each), so a failed version is retried as soon as its copy goes on."""
    entries = []
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


class ModelVersions:
    """The versions of one model: which are on disk, loading, served or failed, and their states."""

    def __init__(
        self,
        entry: ModelEntry,
        limits: Limits,
        batcher: BatchScheduler | None = None,
        retry: LoadRetry = LoadRetry(),
        allowlist: frozenset[str] | None = None,
    ):
        self.entry = entry
        self.limits = limits
        self.batcher = batcher
        self.retry = retry
        self.allowlist = allowlist
        self._lock = threading.Lock()
        self._served: dict[int, ServableVersion] = {}
        self._states: dict[int, tuple[int, str]] = {}  # version -> (State, error message or "")
        self._failed: dict[int, _Failure] = {}

    def _should_load(self, version: int, stamp: tuple) -> bool:
        """Not tried yet, changed on disk since it failed, or due for one of its retries."""
        failure = self._failed.get(version)
        if failure is None or failure.stamp != stamp:
            return True
        if failure.retries >= self.retry.max_retries or time.monotonic() < failure.next_try:
            return False
        failure.retries += 1
        return True

    def _set(self, version: int, state: int, error: str = "") -> None:
        with self._lock:
            self._states[version] = (state, error)

    def poll(self) -> None:
        """Loads the wanted versions not yet served, then unloads unwanted ones, never leaving the model
        with nothing to serve because a newer version failed (or because every folder disappeared)."""
        on_disk = version_folders(self.entry.base_path)
        wanted = self.entry.policy.select(list(on_disk))
        for version in wanted:
            folder = on_disk[version]
            if version in self._served:
                continue
            try:
                stamp = folder_stamp(folder)
            except OSError:
                continue  # disappeared while scanning; the next poll sees what is there
            if self._should_load(version, stamp):
                self._load(version, folder, stamp)
        if self.entry.policy.kind == "latest" and not self._served:
            self._load_fallback(on_disk, wanted)
        with self._lock:
            keep = [version for version in wanted if version in self._served]
            retire = [version for version in self._served if version not in wanted] if keep else []
            for version in retire:
                self._states[version] = (State.UNLOADING, "")
                del self._served[version]
                self._states[version] = (State.END, "")
                log.info("model %s: version %d unloaded", self.entry.name, version)

    def _load_fallback(self, on_disk: dict[int, Path], wanted: list[int]) -> None:
        """With nothing served and the latest versions failing, serves the newest older one that loads,
        so a bad newest export at start-up does not leave the model unavailable."""
        for version in sorted(set(on_disk) - set(wanted), reverse=True):
            try:
                stamp = folder_stamp(on_disk[version])
            except OSError:
                continue
            if self._should_load(version, stamp) and self._load(version, on_disk[version], stamp):
                return

    def _load(self, version: int, folder: Path, stamp: tuple) -> bool:
        self._set(version, State.START)
        self._set(version, State.LOADING)
        started = time.monotonic()
        try:
            servable = ServableVersion(version, str(folder), self.batcher, self.allowlist)
            warmed = servable.warm_up(self.limits)
        except Exception as error:  # a bad export must not stop the server or the other versions
            message = f"failed to load version {version}: {type(error).__name__}: {error}"[:1000]
            previous = self._failed.get(version)
            retries = previous.retries if previous is not None and previous.stamp == stamp else 0
            self._failed[version] = _Failure(stamp, retries, time.monotonic() + self.retry.interval_seconds)
            self._set(version, State.END, message)
            log.warning("model %s: %s", self.entry.name, message)
            return False
        with self._lock:
            self._served[version] = servable
            self._states[version] = (State.AVAILABLE, "")
        self._failed.pop(version, None)
        log.info(
            "model %s: version %d available (%d warmup requests, %.1f s)",
            self.entry.name,
            version,
            warmed,
            time.monotonic() - started,
        )
        return True

    def get(self, version: int | None) -> ServableVersion:
        """The served version asked for, or the newest served one."""
        with self._lock:
            if version is None:
                if not self._served:
                    raise RequestError(
                        grpc.StatusCode.UNAVAILABLE, f"model {self.entry.name!r}: no version available"
                    )
                return self._served[max(self._served)]
            if version not in self._served:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND, f"model {self.entry.name!r}: version {version} is not served"
                )
            return self._served[version]

    def unavailable_reason(self) -> str:
        """Why no version is served (the failed loads' errors, or that no version folder was found);
        empty while one is."""
        with self._lock:
            if self._served:
                return ""
            errors = [message for _, (_, message) in sorted(self._states.items()) if message]
        return "; ".join(errors) or "no version found under its base_path"

    def load_failure(self) -> str:
        """The failed loads' errors while no version is served; empty while one is, or while no
        version folder has appeared yet (the model waits for its first push, as in stock TF Serving)."""
        with self._lock:
            if self._served:
                return ""
            return "; ".join(message for _, (_, message) in sorted(self._states.items()) if message)

    def status(self, version: int | None) -> list[tuple[int, int, str]]:
        """(version, State, error message) per known version, newest first."""
        with self._lock:
            states = dict(self._states)
        if version is not None:
            if version not in states:
                raise RequestError(
                    grpc.StatusCode.NOT_FOUND, f"model {self.entry.name!r}: version {version} is unknown"
                )
            states = {version: states[version]}
        return [(v, *states[v]) for v in sorted(states, reverse=True)]
