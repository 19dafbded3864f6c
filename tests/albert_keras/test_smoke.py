import io
from contextlib import redirect_stdout

import keras
import numpy as np

from albert_keras.config import AlbertConfig
from pipeline_runner import main


def test_smoke_job_prints_shapes_and_a_finite_loss():
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["smoke", "--batch", "2", "--seq", "16"]) == 0
    lines = out.getvalue().splitlines()
    assert f"backend: {keras.backend.backend()}, preset: tiny" in lines
    config = AlbertConfig.preset("tiny")
    assert f"sequence_output: (2, 16, {config.hidden_size})" in lines
    assert f"mlm_logits: (2, 5, {config.vocab_size})" in lines
    initial = next(line for line in lines if line.startswith("initial loss"))
    mlm = float(initial.split()[3])
    assert abs(mlm - np.log(config.vocab_size)) < 0.5  # untrained: close to chance
    loss = float(next(line for line in lines if line.startswith("training step")).split()[-1])
    assert np.isfinite(loss)
