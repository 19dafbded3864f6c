"""Latency timing shared by the benchmark scripts; numpy only, so it also runs in the HF side
environment (.venv-hf). Imported as `timing`: the scripts run as `python bench/NAME.py`, which puts
this folder first on sys.path."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def latency_ms(
    run: Callable[[str], object], notes: list[str], requests: int, warmup: int, budget: float
) -> dict[str, float]:
    """p50/p99 ms of up to `requests` sequential one-note calls after `warmup` calls; stops early once
    `budget` seconds have gone and at least 10 calls are timed (slow configs on small machines)."""
    for i in range(warmup):
        run(notes[i % len(notes)])
    times: list[float] = []
    began = time.perf_counter()
    for i in range(requests):
        if len(times) >= 10 and time.perf_counter() - began > budget:
            break
        start = time.perf_counter()
        run(notes[i % len(notes)])
        times.append(time.perf_counter() - start)
    return {
        "p50_ms": 1000 * float(np.percentile(times, 50)),
        "p99_ms": 1000 * float(np.percentile(times, 99)),
        "requests": len(times),
    }
