"""The DAG file that Airflow's scheduler imports: the clinical ALBERT pipeline as one DAG.

Link or copy it into `$AIRFLOW_HOME/dags` (`pipeline_runner.py run --runner airflow` prints how). It
reads its configuration from the environment of the scheduler and workers:

    CLINICAL_ALBERT_CONFIG    a JSON file of PipelineConfig fields with absolute paths (the one that
                              `pipeline_runner.py run --runner airflow` writes); when unset, the tiny
                              configuration on the bundled sample, writing under
                              $AIRFLOW_HOME/clinical-albert
    CLINICAL_ALBERT_SCHEDULE  an Airflow schedule (cron expression or preset); default @daily

The package must be importable where Airflow runs (installed, as `pip install -e .[airflow]` does).
Parsing this file imports TFX, which takes about half a minute on a small machine: raise Airflow's
`[core] dagbag_import_timeout` (default 30 s) and `dag_file_processor_timeout` (default 50 s), e.g.
AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT=120 and AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT=180.
"""

from __future__ import annotations

import os

from airflow.configuration import AIRFLOW_HOME

from pipeline.configs import TINY, PipelineConfig
from pipeline.runners import CONFIG_ENV, DEFAULT_SCHEDULE, SCHEDULE_ENV, airflow_dag


def _config() -> PipelineConfig:
    path = os.environ.get(CONFIG_ENV)
    if path:
        return PipelineConfig.from_file(path)
    return PipelineConfig(**TINY, output_dir=os.path.join(AIRFLOW_HOME, "clinical-albert"))


DAG = airflow_dag(_config(), os.environ.get(SCHEDULE_ENV, DEFAULT_SCHEDULE))
