"""What the pipeline tests share: running `pipeline_runner.py` in a child process, reading the run's
ML Metadata, and reading the Evaluator's metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = (
    "ClinicalExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "vocabulary_resolver",
    "SentencePieceTokenizer", "TokenizedTransform", "TokenSchemaGen", "token_validator", "AnomalyGate",
    "pretrained_model_resolver", "warm_start_model_resolver", "PretrainingExamples", "pretrain", "finetune",
    "latest_blessed_model_resolver", "Evaluator", "ServingCheck", "ModelCard", "Pusher",
)  # fmt: skip
#: The resolvers of what a run builds on that only the local and Airflow runners have (Kubeflow v2
#: compiles TFX's stock strategies only).
BUILD_ON_RESOLVERS = ("pretrained_model_resolver", "warm_start_model_resolver")


def run_pipeline(output_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`pipeline_runner.py run --tiny --output-dir output_dir ARGS...`, as a user runs it."""
    command = [sys.executable, "pipeline_runner.py", "run", "--tiny", "--output-dir", str(output_dir), *args]
    # As a user runs it: the test command's quieting of TensorFlow and warnings is not passed on, so
    # the console shows what a user would see (library output goes to the run's log file).
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1500, env=env)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def executions(metadata_path: Path):
    """Node id -> the states of its executions, oldest first; and the store."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    store = metadata_store.MetadataStore(config)
    states = {}
    for context in store.get_contexts_by_type("node"):
        node = context.name.split(".")[-1]  # "<pipeline>.<node id>"
        history = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
        states[node] = [metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in history]
    return states, store


def ran_every_component(output_dir: Path) -> bool:
    states, _ = executions(output_dir / "metadata.sqlite")
    ran = {name for name, runs in states.items() if runs and runs[-1] in ("COMPLETE", "CACHED")}
    return set(COMPONENTS) <= ran


def overall_metrics(output_dir: Path) -> tuple[dict[str, float], dict[tuple[str, int], float]]:
    """The last evaluation's metrics over the whole eval split: by name, and by (name, class id) for
    those per class, label or type."""
    import tensorflow_model_analysis as tfma

    evaluation = max(
        (output_dir / "pipeline" / "Evaluator" / "evaluation").iterdir(), key=lambda p: int(p.name)
    )
    overall, per_class = {}, {}
    for slice_metrics in tfma.load_metrics(str(evaluation)):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for metric in slice_metrics.metric_keys_and_values:
            value = metric.value.double_value.value
            if metric.key.HasField("sub_key"):
                per_class[(metric.key.name, metric.key.sub_key.class_id.value)] = value
            else:
                overall[metric.key.name] = value
    return overall, per_class
