"""One small function per orchestrator, each handing `create_pipeline(config)` to that orchestrator's TFX
runner: run it here (LocalDagRunner), compile it for Kubeflow Pipelines v2, or build the Airflow DAG.

Only the metadata connection and the runner's own settings differ: local runs and Airflow keep ML
Metadata in SQLite at `config.metadata_path`; on Kubeflow the cluster's metadata service is used.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
from typing import TYPE_CHECKING

from pipeline.configs import PipelineConfig

if TYPE_CHECKING:
    from airflow.models import DAG

# The image built from this repository (a TFX 1.16 base with this package installed, `pip install
# .[kubeflow]`); every Kubeflow task runs in it. Tag and push it where the cluster can pull it from.
DEFAULT_IMAGE = "clinical-albert-tfx:latest"
DEFAULT_SCHEDULE = "@daily"
# Airflow needs a start date; with catchup off only the latest interval is scheduled.
AIRFLOW_START_DATE = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
AIRFLOW_DAG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "airflow_dag.py")
CONFIG_ENV = "CLINICAL_ALBERT_CONFIG"
SCHEDULE_ENV = "CLINICAL_ALBERT_SCHEDULE"


def run_local(config: PipelineConfig, verbose: bool = False) -> None:
    """Runs every component in this process (Beam DirectRunner) and tells the console as it goes: a line
    as each component starts and ends, the Trainers' progress, then a summary with where the pushed
    model, the model card, the log and ML Metadata are (pipeline/console.py).

    What the libraries print goes to `<output_dir>/logs/run-<UTC time>.log`, or with `verbose` to the
    console as well. When a component fails, the console names it and the error, the log holds the
    traceback, and console.PipelineFailed is raised (KeyboardInterrupt is re-raised as it is).
    """
    from pipeline import component_figures, console

    # Absolute paths: artifact URIs recorded in ML Metadata must not depend on the working directory.
    config = config.replace(
        output_dir=_absolute(config.output_dir), corpus_path=_absolute(config.corpus_path)
    )
    os.makedirs(config.output_dir, exist_ok=True)
    # Every component runs in this process: TensorFlow takes GPU memory as it needs it, so the
    # Trainers' JAX child (components/trainer/child.py) finds the GPU free after the Transform.
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    run = console.LocalRunConsole(config.output_dir, config.metadata_path, config.pipeline_name, verbose)
    with run:
        # Imported here, so that what TensorFlow prints as it loads goes to the log.
        from tfx import v1 as tfx

        from pipeline.pipeline import create_pipeline, eval_config

        metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
        pipeline = create_pipeline(config, metadata)
        run.watch([c.id for c in pipeline.components], component_figures.headline_metric(eval_config(config)))
        tfx.orchestration.LocalDagRunner().run(pipeline)
    run.finish(pushed=last_push(config.metadata_path, config.pipeline_name))
    # Retention (keep_serving_versions, keep_pipeline_runs): what went is listed on the console.
    from pipeline import retention

    plan = retention.prune(config)
    if plan.removals:
        print(plan.format())


def last_push(metadata_path: str, pipeline_name: str) -> str | None:
    """Where the newest Pusher execution put its model (None when it pushed nothing)."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(connection)
    context = store.get_context_by_type_and_name("node", f"{pipeline_name}.Pusher")
    executions = store.get_executions_by_context(context.id) if context else []
    if not executions:
        return None
    newest = max(executions, key=lambda e: e.id)
    events = store.get_events_by_execution_ids([newest.id])
    outputs = store.get_artifacts_by_id([e.artifact_id for e in events if e.type == e.OUTPUT])
    for artifact in outputs:
        if artifact.custom_properties.get("pushed") and artifact.custom_properties["pushed"].int_value:
            return artifact.custom_properties["pushed_destination"].string_value
    return None


def compile_kubeflow(config: PipelineConfig, image: str = DEFAULT_IMAGE, output_spec: str = "") -> str:
    """Writes the KFP v2 pipeline spec and returns its path (default `<output_dir>/<pipeline>.yaml`).

    A `.yaml` file holds the PipelineSpec that `kfp.Client().create_run_from_pipeline_package` uploads
    and `kfp.components.load_component_from_file` reads; a `.json` file holds the PipelineJob that
    Vertex AI Pipelines runs. The pipeline root (`<output_dir>/pipeline`, a gs:// path as given) is
    recorded as the spec's default root, so artifacts land next to the serving directory.
    """
    import yaml
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image)
    )
    job = runner.run(create_pipeline(config, portable=True), write_out=False)
    job["pipelineSpec"]["defaultPipelineRoot"] = config.pipeline_root
    output_spec = output_spec or os.path.join(config.output_dir, f"{config.pipeline_name}.yaml")
    if os.path.dirname(output_spec):
        tfx.dsl.io.fileio.makedirs(os.path.dirname(output_spec))
    with tfx.dsl.io.fileio.open(output_spec, "w") as f:
        if output_spec.endswith((".yaml", ".yml")):
            f.write(f"# PIPELINE DEFINITION\n# Name: {config.pipeline_name}\n")
            f.write(yaml.safe_dump(job["pipelineSpec"], sort_keys=True))
        else:
            f.write(json.dumps(job, sort_keys=True, indent=2))
    return output_spec


def airflow_dag(config: PipelineConfig, schedule: str = DEFAULT_SCHEDULE) -> DAG:
    """The pipeline as an Airflow DAG (one PythonOperator per component, ordered by their channels)."""
    from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    from pipeline.pipeline import create_pipeline

    dag_config = {"schedule": schedule, "start_date": AIRFLOW_START_DATE, "catchup": False}
    metadata = sqlite_metadata_connection_config(config.metadata_path)
    runner = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_config))
    return runner.run(create_pipeline(config, metadata))


def prepare_airflow(config: PipelineConfig, schedule: str = DEFAULT_SCHEDULE) -> str:
    """Builds the DAG once to validate it, writes the config as `<output_dir>/pipeline_config.json` with
    absolute paths (the scheduler runs elsewhere) and returns how to install `airflow_dag.py`."""
    config = config.replace(
        output_dir=_absolute(config.output_dir), corpus_path=_absolute(config.corpus_path)
    )
    dag = airflow_dag(config, schedule)
    os.makedirs(config.output_dir, exist_ok=True)
    config_file = os.path.join(config.output_dir, "pipeline_config.json")
    with open(config_file, "w", encoding="utf-8") as f:
        json.dump(config.to_dict(), f, indent=2)
    return "\n".join(
        [
            f"Airflow DAG {dag.dag_id!r}: {len(dag.tasks)} tasks, schedule {schedule}",
            f"DAG file: {AIRFLOW_DAG_FILE}",
            f"config: {config_file}",
            "To install it, link the DAG file into the DAGs folder and give the scheduler and workers",
            "(run with this environment) the config and schedule:",
            f'  ln -s {shlex.quote(AIRFLOW_DAG_FILE)} "$AIRFLOW_HOME/dags/clinical_albert_dag.py"',
            f"  export {CONFIG_ENV}={shlex.quote(config_file)} {SCHEDULE_ENV}={shlex.quote(schedule)}",
        ]
    )


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)
