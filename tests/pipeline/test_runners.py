"""The Kubeflow and Airflow runners: the KFP v2 spec loads with kfp and keeps every component, its image
and its dependencies; the Airflow DAG file imports under Airflow with a throwaway SQLite home, reads
its config and schedule from the environment, orders its tasks by their channels and serializes as
the scheduler stores it. Nothing is pulled or scheduled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.runs import BUILD_ON_RESOLVERS, COMPONENTS  # every node of create_pipeline

REPO = Path(__file__).resolve().parents[2]
RESOLVER = "latest_blessed_model_resolver"
IMAGE = "registry.example/clinical-albert-tfx:test"
GCS_OUTPUT = "gs://clinical-albert-test/runs"


def _tiny_config(**changes):
    from pipeline.configs import TINY, PipelineConfig

    return PipelineConfig(**{**TINY, **changes})


def _tasks_and_images(pipeline_spec) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Task name -> the tasks it depends on; task name -> its container image (resolvers have none)."""
    from google.protobuf import json_format

    executors = json_format.MessageToDict(pipeline_spec.deployment_spec)["executors"]
    tasks, images = {}, {}
    for name, task in pipeline_spec.root.dag.tasks.items():
        tasks[name] = set(task.dependent_tasks)
        executor = executors[pipeline_spec.components[task.component_ref.name].executor_label]
        if "container" in executor:
            images[name] = executor["container"]["image"]
    return tasks, images


@pytest.fixture(scope="module")
def kubeflow_component(tmp_path_factory):
    """The tiny pipeline compiled with a gs:// output dir, loaded back the way kfp 2.5 loads a package."""
    import kfp.components

    from pipeline.runners import compile_kubeflow

    spec = tmp_path_factory.mktemp("kubeflow") / "clinical-albert.yaml"
    written = compile_kubeflow(_tiny_config(output_dir=GCS_OUTPUT), image=IMAGE, output_spec=str(spec))
    assert written == str(spec)
    return kfp.components.load_component_from_file(written)


def test_kubeflow_spec_has_every_component_in_the_given_image(kubeflow_component):
    tasks, images = _tasks_and_images(kubeflow_component.pipeline_spec)
    # The resolver compiles to one resolver task per input channel, named after it.
    resolvers = {name for name in tasks if name.startswith(f"{RESOLVER}-")}
    assert len(resolvers) == 2, sorted(tasks)
    compiled = set(COMPONENTS) - {RESOLVER, *BUILD_ON_RESOLVERS}
    assert set(tasks) - resolvers == compiled
    assert set(images) == compiled - {"vocabulary_resolver"}
    assert set(images.values()) == {IMAGE}
    assert kubeflow_component.name == "clinical-albert"


def test_kubeflow_spec_keeps_the_dependencies_and_the_gcs_root(kubeflow_component):
    pipeline_spec = kubeflow_component.pipeline_spec
    tasks, _ = _tasks_and_images(pipeline_spec)
    assert tasks["ClinicalExampleGen"] == set()
    # The vocabulary is reused on Kubeflow too (the newest tokenizer, TFX's LatestArtifactStrategy).
    assert tasks["SentencePieceTokenizer"] == {"ClinicalExampleGen", "vocabulary_resolver"}
    assert tasks["AnomalyGate"] == {"ExampleValidator", "token_validator", "SentencePieceTokenizer"}
    assert "AnomalyGate" in tasks["pretrain"]  # the gate has no channel into pretrain, only an edge
    assert "pretrain" in tasks["finetune"]
    assert tasks["Pusher"] == {"finetune", "Evaluator", "ServingCheck", "ModelCard"}
    assert {"finetune", f"{RESOLVER}-model-resolver"} <= tasks["Evaluator"]
    assert pipeline_spec.default_pipeline_root == f"{GCS_OUTPUT}/pipeline"


def test_kubeflow_cli_writes_the_default_spec_and_a_vertex_job(tmp_path, capsys):
    import kfp.components
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipeline_runner import main

    assert main(["run", "--runner", "kubeflow", "--tiny", "--output-dir", str(tmp_path)]) == 0
    default_spec = tmp_path / "clinical-albert.yaml"
    assert capsys.readouterr().out.strip() == f"Kubeflow pipeline spec: {default_spec}"
    _, images = _tasks_and_images(kfp.components.load_component_from_file(str(default_spec)).pipeline_spec)
    assert set(images.values()) == {"clinical-albert-tfx:latest"}

    job_file = tmp_path / "job" / "clinical-albert.json"
    argv = [
        "run",
        "--runner",
        "kubeflow",
        "--tiny",
        "--output-dir",
        GCS_OUTPUT,
        "--output-spec",
        str(job_file),
    ]
    assert main([*argv, "--image", IMAGE, "--set", "pipeline_name=clinical-albert-nightly"]) == 0
    job = json_format.ParseDict(json.loads(job_file.read_text()), pipeline_spec_pb2.PipelineJob())
    assert job.runtime_config.gcs_output_directory == f"{GCS_OUTPUT}/pipeline"
    assert job.pipeline_spec["pipelineInfo"]["name"] == "clinical-albert-nightly"


# Runs in a fresh interpreter, because Airflow reads AIRFLOW_HOME and its database URL on import: the
# runner validates the DAG and writes the config, then Airflow's DagBag imports the DAG file twice: linked
# into a DAGs folder with the environment the runner asks for, and as it is with none. It writes what
# the tests need as JSON.
_AIRFLOW_DRIVER = """
import contextlib, io, json, os, sys
from airflow.models import DagBag
from airflow.serialization.serialized_objects import SerializedDAG
from pipeline_runner import main

summary_file, dag_file, schedule = sys.argv[1:]
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    main(["run", "--runner", "airflow", "--tiny", "--output-dir", "out", "--schedule", schedule,
          "--set", "pipeline_name=clinical-albert-nightly"])
summary = {"printed": printed.getvalue()}
os.makedirs("dags")
os.symlink(dag_file, "dags/clinical_albert_dag.py")  # installed as the runner says
for name, folder, env in (
    ("configured", "dags", {"CLINICAL_ALBERT_CONFIG": os.path.abspath("out/pipeline_config.json"),
                            "CLINICAL_ALBERT_SCHEDULE": schedule}),
    ("default", dag_file, {}),
):
    os.environ.update(env)
    bag = DagBag(dag_folder=folder, include_examples=False)
    for key in env:
        del os.environ[key]
    dags = {}
    for dag_id, dag in bag.dags.items():
        stored = SerializedDAG.from_dict(SerializedDAG.to_dict(dag))
        dags[dag_id] = {
            "schedule": dag.timetable.summary,
            "catchup": dag.catchup,
            "order": [task.task_id for task in dag.topological_sort()],
            "upstream": {task.task_id: sorted(task.upstream_task_ids) for task in stored.tasks},
        }
    summary[name] = {"import_errors": list(bag.import_errors.values()), "dags": dags}
with open(summary_file, "w") as f:
    json.dump(summary, f)
"""


@pytest.fixture(scope="module")
def airflow_summary(tmp_path_factory):
    work = tmp_path_factory.mktemp("airflow")
    home = work / "airflow_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINICAL_ALBERT_")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="600",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    summary_file = work / "summary.json"
    command = [sys.executable, "-c", _AIRFLOW_DRIVER, str(summary_file)]
    command += [str(REPO / "pipeline" / "airflow_dag.py"), "0 3 * * 1"]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return work, json.loads(summary_file.read_text())


def test_airflow_runner_writes_the_config_and_says_how_to_install_the_dag(airflow_summary):
    from pipeline.configs import PipelineConfig

    work, summary = airflow_summary
    config_file = work / "out" / "pipeline_config.json"
    config = PipelineConfig.from_file(str(config_file))
    assert config.output_dir == str(work / "out")  # made absolute for the scheduler
    assert config.pipeline_name == "clinical-albert-nightly" and config.preset == "tiny"
    printed = summary["printed"]
    assert f"ln -s {REPO / 'pipeline' / 'airflow_dag.py'} " in printed
    assert f"CLINICAL_ALBERT_CONFIG={config_file}" in printed
    assert "CLINICAL_ALBERT_SCHEDULE='0 3 * * 1'" in printed
    assert f"{len(COMPONENTS)} tasks" in printed


def test_airflow_dag_follows_the_environment_and_orders_tasks_by_channel(airflow_summary):
    _, summary = airflow_summary
    configured = summary["configured"]
    assert configured["import_errors"] == []
    assert list(configured["dags"]) == ["clinical-albert-nightly"]
    dag = configured["dags"]["clinical-albert-nightly"]
    assert dag["schedule"] == "0 3 * * 1" and dag["catchup"] is False
    assert sorted(dag["order"]) == sorted(COMPONENTS)
    position = {task: i for i, task in enumerate(dag["order"])}
    for before, after in (
        ("ClinicalExampleGen", "SentencePieceTokenizer"),
        ("AnomalyGate", "PretrainingExamples"),
        ("PretrainingExamples", "pretrain"),
        ("pretrain", "finetune"),
        ("Evaluator", "Pusher"),
        ("ServingCheck", "Pusher"),
    ):
        assert position[before] < position[after], (before, after)
    upstream = dag["upstream"]  # as the scheduler stores it (serialized and read back)
    assert upstream["SentencePieceTokenizer"] == ["ClinicalExampleGen", "vocabulary_resolver"]
    assert upstream["PretrainingExamples"] == ["AnomalyGate", "SentencePieceTokenizer", "TokenizedTransform"]
    assert upstream["pretrained_model_resolver"] == ["PretrainingExamples"]
    assert "PretrainingExamples" in upstream["pretrain"]
    assert upstream["Pusher"] == ["Evaluator", "ModelCard", "ServingCheck", "finetune"]
    assert upstream["Evaluator"] == sorted(["ClinicalExampleGen", "finetune", RESOLVER])


def test_airflow_dag_without_environment_is_the_daily_sample_run_under_airflow_home(airflow_summary):
    work, summary = airflow_summary
    default = summary["default"]
    assert default["import_errors"] == []
    assert list(default["dags"]) == ["clinical-albert"]
    dag = default["dags"]["clinical-albert"]
    assert dag["schedule"] == "0 0 * * *" and len(dag["order"]) == len(COMPONENTS)  # @daily
    assert (work / "airflow_home" / "clinical-albert").is_dir()  # where its ML Metadata will live


def test_token_classification_config_is_checked_and_reaches_transform_trainer_and_evaluator():
    from pipeline.configs import REPO, TINY, PipelineConfig
    from pipeline.pipeline import create_pipeline, eval_config

    with pytest.raises(ValueError, match="task must be one of"):
        _tiny_config(task="ner")
    with pytest.raises(ValueError, match="needs entity_types") as raised:
        _tiny_config(task="token_classification")
    assert "needs reader_config.spans_key" in str(raised.value)

    config = PipelineConfig.from_file(f"{REPO}/pipeline/ncbi_disease_tokens.json", **TINY)
    assert (config.task, config.corpus_format, config.preset) == ("token_classification", "conll", "tiny")
    assert config.entity_types == ("Disease",)  # BLURB scores one type
    gen = {node.id: node for node in create_pipeline(config).components}["ClinicalExampleGen"]
    assert json.loads(gen.exec_properties["split_source"]) == config.split_source
    nodes = {node.id: node for node in create_pipeline(config).components}
    for node_id in ("TokenizedTransform", "finetune"):
        custom = json.loads(nodes[node_id].exec_properties["custom_config"])
        assert custom["task"] == "token_classification" and custom["entity_types"] == list(
            config.entity_types
        )
    assert "tokenizer" in nodes["finetune"].inputs  # its export tokenizes with offsets
    spec = eval_config(config)
    assert spec.model_specs[0].label_key == "token_labels"
    assert [m.class_name for m in spec.metrics_specs[0].metrics] == ["ExampleCount", "EntityF1"]


def test_every_task_config_loads_and_gets_its_evaluation():
    from pipeline.configs import REPO, TINY, PipelineConfig
    from pipeline.pipeline import create_pipeline, eval_config

    pair = PipelineConfig.from_file(f"{REPO}/pipeline/pubmedqa.json", **TINY)
    assert pair.task == "text_pair_classification" and pair.label_names == ("yes", "no", "maybe")
    assert pair.split_source["field"]["test"] == ["test"]
    nodes = {node.id: node for node in create_pipeline(pair).components}
    assert json.loads(nodes["TokenizedTransform"].exec_properties["custom_config"])["task"] == pair.task
    assert eval_config(pair).model_specs[0].label_key == "label"
    with pytest.raises(ValueError, match="needs reader_config text_b_key"):
        pair.replace(reader_config={"text_key": "question"})

    multi = PipelineConfig.from_file(f"{REPO}/pipeline/mtsamples_specialties.json", **TINY)
    assert multi.task == PipelineConfig().task == "multi_label_classification"  # the default run's task
    spec = eval_config(multi)
    assert (spec.model_specs[0].label_key, spec.model_specs[0].prediction_key) == (
        "label_set",
        "decision_scores",
    )
    assert [m.class_name for m in spec.metrics_specs[0].metrics] == ["ExampleCount", "MultiLabelF1"]
    blessed = spec.metrics_specs[0].metrics[1]
    assert json.loads(blessed.config)["name"] == "micro_f1" and blessed.HasField("threshold")
    macro = eval_config(multi.replace(blessing_metric="macro_f1")).metrics_specs[0].metrics[1]
    assert json.loads(macro.config)["name"] == "multi_label_macro_f1"
    with pytest.raises(ValueError, match="needs label_names"):
        multi.replace(label_names=())
    with pytest.raises(ValueError, match="label_priority names labels not in label_names"):
        multi.replace(task="note_classification", label_priority=("Veterinary",))


def test_the_fine_tuning_recipe_is_checked_and_reaches_the_trainer():
    from pipeline.pipeline import create_pipeline

    config = _tiny_config(finetune_epochs=2.5, finetune_patience=4, finetune_recipe="plain")
    custom = json.loads(
        {node.id: node for node in create_pipeline(config).components}["finetune"].exec_properties[
            "custom_config"
        ]
    )
    assert (custom["epochs"], custom["patience"], custom["recipe"]) == (2.5, 4, "plain")
    assert (custom["warmup_fraction"], custom["clipnorm"]) == (0.1, 1.0)
    with pytest.raises(ValueError, match="finetune_recipe must be one of") as raised:
        _tiny_config(finetune_recipe="last", finetune_warmup_fraction=1.0, finetune_patience=-1)
    assert "finetune_warmup_fraction must be in [0, 1)" in str(raised.value)
    assert "finetune_patience must not be negative" in str(raised.value)


def test_the_scheduled_run_settings_are_checked():
    from pipeline.configs import PipelineConfig

    with pytest.raises(ValueError) as error:
        PipelineConfig(
            corpus_spans=0, vocabulary_version=0, keep_serving_versions=-1, max_pieces_per_word_ratio=0.9
        )
    for name in ("corpus_spans", "vocabulary_version", "keep_serving_versions", "max_pieces_per_word_ratio"):
        assert name in str(error.value)
    # More than one span needs {SPAN} in the corpus path: refused when the pipeline is built.
    from pipeline.pipeline import create_pipeline

    with pytest.raises(ValueError, match="SPAN"):
        create_pipeline(PipelineConfig(corpus_spans=2))
