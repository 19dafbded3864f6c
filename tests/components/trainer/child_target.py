"""A function for `child.run_child` in tests: what backend it ran under, and a failure on request."""

from __future__ import annotations

import sys


def report(job: dict) -> dict:
    import keras

    if job["x"] < 0:
        raise ValueError(f"refused x={job['x']}")
    return {
        "backend": keras.backend.backend(),
        "x": job["x"],
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
