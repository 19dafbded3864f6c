"""The committed HF golden fixture is what HF transformers computes, recomputed here.

Needs the side environment (scripts/setup_hf_env.sh), which the README's test command installs.
"""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

REPO = pathlib.Path(__file__).parents[1]
HF_PYTHON = REPO / ".venv-hf" / "bin" / "python"
GOLDEN = REPO / "tests" / "fixtures" / "hf_albert_golden.npz"


def test_golden_fixture_matches_a_fresh_hf_run(tmp_path):
    if not HF_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must run the HF reference: .venv-hf is missing (scripts/setup_hf_env.sh)")
        pytest.skip("HF reference environment not installed (scripts/setup_hf_env.sh)")
    out = tmp_path / "golden.npz"
    script = REPO / "tests" / "fixtures" / "make_hf_golden.py"
    result = subprocess.run(
        [str(HF_PYTHON), str(script), str(out)], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fresh, committed = np.load(out), np.load(GOLDEN)
    assert sorted(fresh.files) == sorted(committed.files)
    assert json.loads(str(fresh["meta"]))["configs"] == json.loads(str(committed["meta"]))["configs"]
    for key in committed.files:
        if key == "meta":
            continue
        if key.endswith("_output"):
            np.testing.assert_allclose(fresh[key], committed[key], rtol=0, atol=1e-6, err_msg=key)
        else:  # weights and inputs come from seeded generators: identical
            np.testing.assert_array_equal(fresh[key], committed[key], err_msg=key)
