"""Training in a child process under the Keras backend that trains fastest.

Keras 3 fixes its backend when it is first imported, and the TFX process is TensorFlow's: TF Transform,
the Trainer's own executor and the SavedModel export need it. The library's fast path on a GPU is JAX
(bench/RESULTS.md: 1.11x HF compiled), and GPU images built for JAX carry no TensorFlow. So a Trainer's
run_fn hands its training to a child, `python -m components.trainer.child MODULE:FUNCTION JOB RESULT`,
with KERAS_BACKEND set: the function reads the job (JSON), trains, writes its files, and returns a JSON
result. The parent then exports under TensorFlow from the files the child saved.

The child inherits the environment (the progress file of components/trainer/progress.py included), its
output goes to the parent's stdout and stderr (the run's log), and a non-zero exit raises
`ChildFailed` with the child's last lines. A killed child leaves its checkpoints behind; the next attempt
resumes from them as a run in the same process would.

Backends (custom_config `training_backend`):
    auto         JAX when it is installed and the machine has one GPU, else TensorFlow in the Trainer's
                 own process: on CPU TensorFlow trains this model faster (bench/RESULTS.md, "The
                 Trainers' backends on CPU"), and on several GPUs or a multi-worker cluster its
                 strategies use every device (the JAX child uses one)
    jax          always the JAX child (JAX must be installed)
    tensorflow   in process, as before (also the fallback when JAX is not installed)
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
from typing import Any

BACKEND_KEY = "training_backend"
BACKENDS = ("auto", "jax", "tensorflow")
#: The child's last output lines quoted in `ChildFailed`.
TAIL_LINES = 20


class ChildFailed(RuntimeError):
    """The training child exited with an error; the message ends with its last output lines."""


def jax_installed() -> bool:
    return importlib.util.find_spec("jax") is not None


def choose_backend(requested: str | None, gpus: int, cluster_tasks: int = 0) -> str:
    """The backend a Trainer trains under: 'jax' (a child process) or 'tensorflow' (in process).

    `gpus` is the machine's GPU count (the caller asks TensorFlow, which lists them without taking
    memory; importing JAX in the TFX process would claim the GPU before the child does), and
    `cluster_tasks` the tasks of a TF_CONFIG cluster. The JAX child trains on one device of one
    machine, so "auto" keeps TensorFlow, whose strategies use them all, for several GPUs and for
    multi-worker clusters; "jax" refuses a cluster.
    """
    requested = (requested or "auto").lower()
    if requested not in BACKENDS:
        raise ValueError(f"{BACKEND_KEY} must be one of {BACKENDS}, received {requested!r}")
    if requested == "jax":
        if not jax_installed():
            raise ValueError(f"{BACKEND_KEY} is 'jax' but JAX is not installed in this image")
        if cluster_tasks > 1:
            raise ValueError(
                f"TF_CONFIG names a cluster of {cluster_tasks} tasks, but {BACKEND_KEY} 'jax' trains in one "
                f"process on one machine: set {BACKEND_KEY} to 'tensorflow' for multi-worker runs"
            )
        return "jax"
    if requested == "auto" and gpus == 1 and cluster_tasks <= 1 and jax_installed():
        return "jax"
    return "tensorflow"


def leave_gpus_to_child() -> None:
    """Makes this (TensorFlow) process take GPU memory as it needs it rather than nearly all of it at
    its first GPU op, so that the JAX child finds the GPU free. Too late once TensorFlow has used a GPU
    in this process (an in-process Transform before the Trainer, say): then it warns. The local runner
    sets TF_FORCE_GPU_ALLOW_GROWTH for the whole run, which avoids that."""
    import tensorflow as tf
    from absl import logging

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            logging.warning(
                "TensorFlow already holds the GPUs in the Trainer's process; the JAX child may find too "
                "little GPU memory (set TF_FORCE_GPU_ALLOW_GROWTH=true for the pipeline's process)"
            )
            return


def run_child(function: str, job: dict[str, Any], workdir: str, backend: str = "jax") -> dict[str, Any]:
    """Runs `function` ("package.module:name", taking the job dict, returning a JSON-able dict) in a
    child Python process with KERAS_BACKEND=`backend`; returns its result.

    `workdir` (a local folder) receives the job and result files.
    """
    os.makedirs(workdir, exist_ok=True)
    job_path, result_path = os.path.join(workdir, "job.json"), os.path.join(workdir, "result.json")
    with open(job_path, "w", encoding="utf-8") as f:
        json.dump(job, f, indent=1, sort_keys=True)
    if os.path.exists(result_path):
        os.remove(result_path)
    env = {**os.environ, "KERAS_BACKEND": backend}
    env.pop("TF_USE_LEGACY_KERAS", None)  # set by TF Transform for tf.keras; the child uses Keras 3 only
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "components.trainer.child", function, job_path, result_path]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def forward() -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            tail.append(line.rstrip("\n"))
            sys.stderr.write(line)
            sys.stderr.flush()

    reader = threading.Thread(target=forward, daemon=True)
    reader.start()
    try:
        code = process.wait()
    except BaseException:
        process.kill()  # the parent is interrupted: the child must not train on alone
        process.wait()
        raise
    finally:
        reader.join(timeout=10)
    if code != 0:
        lines = "\n".join(tail)
        raise ChildFailed(f"{function} under {backend} exited with status {code}; its last lines:\n{lines}")
    with open(result_path, encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> int:
    function, job_path, result_path = (sys.argv[1:] if argv is None else argv)[:3]
    module_name, _, name = function.partition(":")
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    result = getattr(importlib.import_module(module_name), name)(job)
    with open(result_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    os.replace(result_path + ".tmp", result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
