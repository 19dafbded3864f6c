"""The set-up path of the README: scripts/find_python.sh finds Python 3.10 or says what is missing."""

import pathlib
import shutil
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).parents[1] / "scripts" / "find_python.sh"


def _find(env_overrides, tmp_path):
    """Runs the script with a PATH that holds only the tools it uses (and no Python of this machine)."""
    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    for tool in ("ls", "sort", "cat"):
        if not (tools / tool).exists():
            (tools / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(tools), "HOME": str(tmp_path), **env_overrides}
    bash = shutil.which("bash")
    return subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_finds_python_310_in_pyenv_versions(tmp_path):
    versions = tmp_path / "pyenv" / "versions" / "3.10.99" / "bin"
    versions.mkdir(parents=True)
    (versions / "python3.10").symlink_to(sys.executable)  # the test runs on the project's 3.10
    result = _find({"PYENV_ROOT": str(tmp_path / "pyenv")}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(versions / "python3.10")


def test_says_what_is_missing_when_there_is_no_python_310(tmp_path):
    (tmp_path / "bin").mkdir()
    wrong = tmp_path / "bin" / "python3"
    wrong.write_text("#!/bin/sh\nexit 1\n")  # a python3 that is not 3.10
    wrong.chmod(0o755)
    result = _find({"PYENV_ROOT": str(tmp_path / "no-pyenv")}, tmp_path)
    assert result.returncode == 1
    assert "no Python 3.10 found" in result.stderr
    assert "PYENV_ROOT" in result.stderr and "PYTHON" in result.stderr


def test_rejects_a_python_variable_that_is_not_310(tmp_path):
    result = _find({"PYTHON": "/bin/false", "PYENV_ROOT": str(tmp_path)}, tmp_path)
    assert result.returncode == 1
    assert "PYTHON=/bin/false is not a Python 3.10 interpreter" in result.stderr


def test_lock_pins_the_stack_that_resolves_on_this_platform():
    lock = (pathlib.Path(__file__).parents[1] / "requirements.lock").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lock if "==" in line and not line.startswith("#"))
    assert pins["tfx"] == "1.16.0"
    assert pins["tensorflow"] == "2.16.2"
    assert pins["tensorflow-text"] == "2.16.1"
    assert pins["keras"].startswith("3.12.")
    assert pins["keras-hub"] == "0.25.1"
    assert pins["apache-beam"] == "2.59.0"
