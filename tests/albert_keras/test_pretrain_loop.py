import os
import subprocess
import sys

import h5py
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker(tmp_path, name, die_at):
    args = [str(tmp_path / name), "8", "2", str(die_at), str(tmp_path / f"{name}.weights.h5")]
    return subprocess.run(
        [sys.executable, "-m", "tests.albert_keras.pretrain_worker", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return out


def test_a_killed_run_resumes_at_its_checkpoint_and_ends_where_an_unbroken_run_ends(tmp_path):
    unbroken = _worker(tmp_path, "unbroken", die_at=0)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]
    assert "'mlm_accuracy'" in unbroken.stdout and "'sop_accuracy'" in unbroken.stdout

    killed = _worker(tmp_path, "broken", die_at=5)  # after the checkpoint at step 4, before step 6
    assert killed.returncode == 3, killed.stderr[-3000:]
    assert not (tmp_path / "broken.weights.h5").exists()
    state = (tmp_path / "broken" / "checkpoint.json").read_text()
    assert '"step": 4' in state

    resumed = _worker(tmp_path, "broken", die_at=0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, actual = _arrays(tmp_path / "unbroken.weights.h5"), _arrays(tmp_path / "broken.weights.h5")
    assert expected.keys() == actual.keys() and len(expected) > 50
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=0, atol=1e-6, err_msg=name)
    assert int(expected["optimizer/vars/0"]) == 8  # the optimizer's step count
