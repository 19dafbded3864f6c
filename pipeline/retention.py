"""Retention: keeps the serving directory and the pipeline root from growing without end.

The policy comes from two PipelineConfig fields (0 keeps everything):
- keep_serving_versions: the newest K version folders of `serving_dir` stay;
- keep_pipeline_runs: the pipeline-root artifacts of the newest N runs stay.

Whatever the numbers, these are never deleted:
- the newest serving version (TF Serving serves it) and the last blessed model's version (the newest
  PushedModel that pushed a blessed model; the version to roll back to);
- what later runs build on (pipeline/resolvers.py): the newest tokenizer, the newest pretrained model,
  the last blessed fine-tuned model and its ModelBlessing (the Evaluator's baseline and fine-tuning's
  warm start), and the inputs of the executions that made these three. One step of lineage is
  enough: a run on new data resolves the newest artifact itself, and a rerun on the data the newest was
  made from resolves what that newest artifact was made from (its inputs), so that it is served from
  the cache. The blessing's own inputs (the examples, an older baseline) are not needed by any run;
- every artifact a kept run read, wrote or resolved (a cached step's artifacts were made earlier).

`plan(config)` says what would go and why each thing that stays is kept; `apply(plan)` marks the
plan's artifacts DELETED in ML Metadata (TFX's resolvers and its cache then skip them; marked before
their files go, so a half-deleted folder is never used) and removes the paths: local ones directly,
others (gs://) with TFX's fileio. `prune(config, dry_run)` does both; it reads nothing more than two listings
when there is nothing to prune.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator

from pipeline import history
from pipeline.configs import PipelineConfig

LIVE = "LIVE"


class RetentionError(RuntimeError):
    """Some planned paths could not be removed (their artifacts are already marked DELETED)."""


@dataclasses.dataclass(frozen=True)
class Removal:
    """A path that goes: a serving version folder, or an artifact's folder (or file) in the pipeline
    root. what: the artifact's type, or "serving version"; group: "serving" or the run that made the
    artifact; artifact_id: the artifact that `apply` marks DELETED (None for a serving version)."""

    path: str
    size_bytes: int
    what: str
    group: str
    artifact_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Kept:
    """Something the policy covers that stays, and why."""

    what: str
    path: str
    why: str


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `apply` removes (`removals`) and what stays (`kept`), for the paths and numbers given.
    applied: the removals have been made (a dry run's plan is not)."""

    metadata_path: str
    pipeline_root: str
    serving_dir: str
    keep_pipeline_runs: int
    keep_serving_versions: int
    removals: tuple[Removal, ...] = ()
    kept: tuple[Kept, ...] = ()
    applied: bool = False

    @property
    def size_bytes(self) -> int:
        return sum(r.size_bytes for r in self.removals)

    def format(self, why: bool = False) -> str:
        """The plan as an operator reads it: the policy, each path that goes (size, what it is) and,
        with `why`, each thing that stays and the reason."""
        lines = [
            f"serving {self.serving_dir}: {_policy(self.keep_serving_versions, 'version')}",
            f"pipeline root {self.pipeline_root}: {_policy(self.keep_pipeline_runs, 'run')}",
        ]
        if not self.removals:
            lines.append("nothing to remove")
        else:
            verb = "removed" if self.applied else "would remove"
            lines.append(f"{verb} {len(self.removals)} paths, {format_size(self.size_bytes)}:")
            width = max(len(format_size(r.size_bytes)) for r in self.removals)
            groups: dict[str, list[Removal]] = {}
            for removal in self.removals:
                groups.setdefault(removal.group, []).append(removal)
            for group, removals in groups.items():
                size = format_size(sum(r.size_bytes for r in removals))
                lines.append(f"  {group}: {len(removals)} paths, {size}")
                lines.extend(
                    f"    {format_size(r.size_bytes).rjust(width)}  {r.path}  {r.what}" for r in removals
                )
        if why and self.kept:
            lines.append(f"kept ({len(self.kept)}):")
            lines.extend(f"  {k.what}: {k.why}" + (f"\n    {k.path}" if k.path else "") for k in self.kept)
        return "\n".join(lines)


def _policy(keep: int, unit: str) -> str:
    return f"keep the newest {keep} {unit}{'s' if keep != 1 else ''}" if keep else "keep all"


def format_size(size: float) -> str:
    units = ("B", "KB", "MB", "GB")
    exponent = 0
    while size >= 1024 and exponent < len(units) - 1:
        size /= 1024
        exponent += 1
    return f"{size:.0f} B" if exponent == 0 else f"{size:.1f} {units[exponent]}"


# -- files: on local disk directly, elsewhere (gs://) through TFX's fileio, which loads TensorFlow --


def _absolute(path: str) -> str:
    """As pipeline/runners.py makes them: ML Metadata records absolute URIs."""
    return path if "://" in path else os.path.abspath(path)


def _listdir(path: str) -> list[str]:
    if "://" not in path:
        return os.listdir(path) if os.path.isdir(path) else []
    from tfx.dsl.io import fileio

    return [name.rstrip("/") for name in fileio.listdir(path)] if fileio.exists(path) else []


def _files(path: str) -> Iterator[str]:
    if "://" not in path:
        if os.path.isfile(path):
            yield path
        for root, _, names in os.walk(path):
            yield from (os.path.join(root, name) for name in names)
        return
    from tfx.dsl.io import fileio

    if not fileio.isdir(path):
        yield path
        return
    for root, _, names in fileio.walk(path):
        yield from (os.path.join(str(root), str(name)) for name in names)


def _size(path: str) -> int:
    """Bytes under `path` (0 when it is gone)."""
    if "://" not in path:
        return sum(os.path.getsize(name) for name in _files(path))
    from tfx.dsl.io import fileio

    if not fileio.exists(path):
        return 0
    total = 0
    for name in _files(path):
        stat = fileio.stat(name)
        total += getattr(stat, "st_size", None) or getattr(stat, "length", 0)
    return total


def _remove(path: str) -> None:
    """Removes a folder, or a file and then its folder when that is left empty (TFX's value artifacts
    are files in a folder of their own)."""
    if "://" not in path:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
            with contextlib.suppress(OSError):  # not empty
                os.rmdir(os.path.dirname(path))
        return
    from tfx.dsl.io import fileio

    if not fileio.exists(path):
        return
    if fileio.isdir(path):
        fileio.rmtree(path)
        return
    fileio.remove(path)
    parent = os.path.dirname(path)
    if fileio.isdir(parent) and not fileio.listdir(parent):
        fileio.rmtree(parent)


# -- the plan -----------------------------------------------------------------------------------------


def _versions(serving_dir: str) -> list[str]:
    """The integer version folders of `serving_dir`, newest first."""
    return sorted((name for name in _listdir(serving_dir) if name.isdigit()), key=int, reverse=True)


def _run_count(metadata_path: str, pipeline_name: str) -> int:
    if not os.path.exists(metadata_path):
        return 0
    store = history.connect(metadata_path)
    pipeline = store.get_context_by_type_and_name(history.PIPELINE_CONTEXT, pipeline_name)
    if pipeline is None:
        return 0
    return len(history.pipeline_runs(store, pipeline.id))


def last_blessed_version(record: history.PipelineRecord) -> str | None:
    """The version the newest PushedModel of a blessed model went to; else the newest pushed version
    (the Pusher pushes only blessed models, but a blessing may be missing from the record)."""
    pushed = [a for a in record.outputs_of(history.PUSHER, history.PUSHED_MODEL_KEY) if a.get("pushed")]
    for artifact in reversed(pushed):
        for execution in record.producers(artifact.id):
            blessings = [record.artifacts.get(i) for i in execution.inputs.get("model_blessing", ())]
            if any(b is not None and b.get("blessed") for b in blessings):
                return str(artifact.get("pushed_version"))
    return str(pushed[-1].get("pushed_version")) if pushed else None


def _serving_plan(
    serving_dir: str, keep: int, versions: list[str], record: history.PipelineRecord
) -> tuple[list[Removal], list[Kept]]:
    blessed = last_blessed_version(record)
    removals, kept = [], []
    for rank, version in enumerate(versions):
        path = os.path.join(serving_dir, version)
        what = f"serving version {version}"
        if rank == 0:
            kept.append(Kept(what, path, "the newest version: TF Serving serves it"))
        elif blessed is not None and int(version) == int(blessed):
            kept.append(Kept(what, path, "the last blessed model's version"))
        elif rank < keep:
            kept.append(Kept(what, path, f"one of the newest {keep} versions"))
        else:
            removals.append(Removal(path, _size(path), "serving version", "serving"))
    return removals, kept


def build_on(record: history.PipelineRecord) -> dict[int, str]:
    """Artifact id -> why later runs need it: the newest tokenizer, the newest pretrained model, the
    last blessed fine-tuned model and its blessing, and the inputs of the first three (module doc)."""

    def newest(node: str, key: str, blessings: dict[int, history.Artifact] | None = None):
        live = [a for a in record.outputs_of(node, key) if a.state == LIVE]
        live = [a for a in live if blessings is None or a.id in blessings]
        return live[-1] if live else None

    blessings = {
        int(b.get("current_model_id")): b
        for b in record.outputs_of(history.EVALUATOR, history.BLESSING_KEY)
        if b.state == LIVE and b.get("blessed") and b.get("current_model_id") is not None
    }
    needed = [
        (
            newest(history.TOKENIZER, history.TOKENIZER_KEY),
            "the newest tokenizer",
            "its vocabulary is reused",
        ),
        (
            newest(history.PRETRAIN, history.MODEL_KEY),
            "the newest pretrained model",
            "pretraining continues from it",
        ),
        (
            newest(history.FINETUNE, history.MODEL_KEY, blessings),
            "the last blessed model",
            "the Evaluator's baseline, fine-tuning's warm start",
        ),
    ]
    reasons: dict[int, str] = {}
    for artifact, name, why in needed:
        if artifact is not None:
            reasons[artifact.id] = f"{name} ({why})"
    for artifact, name, _ in needed:
        if artifact is None:
            continue
        if artifact.id in blessings:
            reasons.setdefault(blessings[artifact.id].id, f"{name}'s blessing")
        for key, inputs in record.inputs_of(artifact.id).items():
            for source in inputs:
                reasons.setdefault(source.id, f"input {key!r} of {name}")
    return reasons


def _output_key(execution: history.Execution, artifact_id: int) -> str:
    return next((key for key, ids in execution.outputs.items() if artifact_id in ids), "?")


def _pipeline_root_plan(
    pipeline_root: str, keep: int, record: history.PipelineRecord
) -> tuple[list[Removal], list[Kept]]:
    kept_runs, old_runs = record.runs[:keep], record.runs[keep:]
    reasons = build_on(record)
    for run in kept_runs:
        for artifact_id in run.artifact_ids():
            reasons.setdefault(artifact_id, f"used by run {run.id}, one of the newest {keep}")
    root = pipeline_root.rstrip("/") + "/"
    kept = [Kept(f"run {run.id}", "", f"one of the newest {keep} runs") for run in kept_runs]
    removals: list[Removal] = []
    seen: set[int] = set()
    # Oldest first: an artifact counts under the run that made it, not a later one that reused it.
    for run in reversed(old_runs):
        for execution in run.executions:
            for artifact_id in sorted({i for ids in execution.outputs.values() for i in ids} - seen):
                seen.add(artifact_id)
                artifact = record.artifacts.get(artifact_id)
                if artifact is None or artifact.state != LIVE or not artifact.uri.startswith(root):
                    continue
                if artifact_id in reasons:
                    what = f"{execution.node}.{_output_key(execution, artifact_id)} of run {run.id}"
                    kept.append(Kept(what, artifact.uri, reasons[artifact_id]))
                else:
                    size = _size(artifact.uri)
                    removals.append(Removal(artifact.uri, size, artifact.type, f"run {run.id}", artifact_id))
    return removals, kept


def plan(config: PipelineConfig) -> Plan:
    """What retention would remove under `config`'s policy, and why the rest stays."""
    metadata_path, serving_dir = _absolute(config.metadata_path), _absolute(config.serving_dir)
    pipeline_root = _absolute(config.pipeline_root)
    empty = Plan(
        metadata_path,
        pipeline_root,
        serving_dir,
        config.keep_pipeline_runs,
        config.keep_serving_versions,
    )
    keep_versions, keep_runs = config.keep_serving_versions, config.keep_pipeline_runs
    versions = _versions(serving_dir) if keep_versions else []
    prune_serving = len(versions) > keep_versions > 0
    prune_runs = keep_runs > 0 and _run_count(metadata_path, config.pipeline_name) > keep_runs
    if not (prune_serving or prune_runs):
        return empty
    record = (
        history.read_record(metadata_path, config.pipeline_name)
        if os.path.exists(metadata_path)
        else history.PipelineRecord(config.pipeline_name, (), {})
    )
    removals, kept = [], []
    if prune_serving:
        gone, stay = _serving_plan(serving_dir, keep_versions, versions, record)
        removals += gone
        kept += stay
    if prune_runs:
        gone, stay = _pipeline_root_plan(pipeline_root, keep_runs, record)
        removals += gone
        kept += stay
    return dataclasses.replace(empty, removals=tuple(removals), kept=tuple(kept))


# -- applying it --------------------------------------------------------------------------------------


def _mark_deleted(metadata_path: str, artifact_ids: list[int]) -> None:
    """Sets the artifacts' state to DELETED (those still LIVE)."""
    from ml_metadata.proto import metadata_store_pb2

    store = history.connect(metadata_path, read_only=False)
    artifacts = [
        a for a in store.get_artifacts_by_id(artifact_ids) if a.state == metadata_store_pb2.Artifact.LIVE
    ]
    for artifact in artifacts:
        artifact.state = metadata_store_pb2.Artifact.DELETED
    if artifacts:
        store.put_artifacts(artifacts)


def apply(plan: Plan) -> Plan:
    """Marks the plan's artifacts DELETED, then removes its paths; returns the plan as applied. Every
    path is tried; RetentionError lists those that could not be removed."""
    if not plan.removals:
        return dataclasses.replace(plan, applied=True)
    artifact_ids = [r.artifact_id for r in plan.removals if r.artifact_id is not None]
    if artifact_ids:
        _mark_deleted(plan.metadata_path, artifact_ids)
    failures = []
    for removal in plan.removals:
        try:
            _remove(removal.path)
        except Exception as error:  # every path is tried; the failures are reported together
            failures.append(f"{removal.path} ({removal.what}): {type(error).__name__}: {error}")
    if failures:
        raise RetentionError(
            f"{len(failures)} of {len(plan.removals)} paths could not be removed (their artifacts are marked "
            "DELETED; remove them by hand):\n  " + "\n  ".join(failures)
        )
    return dataclasses.replace(plan, applied=True)


def prune(config: PipelineConfig, dry_run: bool = False) -> Plan:
    """Plans retention under `config`'s policy and, unless `dry_run`, applies it; returns the plan
    (`applied` says whether anything was removed). Cheap when there is nothing to prune."""
    planned = plan(config)
    return planned if dry_run else apply(planned)
