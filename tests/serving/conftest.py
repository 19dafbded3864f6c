"""Fixtures shared by the serving tests: two fake exports that answer differently, and a record of the
signature calls a server makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.servable import ServableVersion
from tests.serving.fake_export import build_export
from tests.serving.harness import V1_LABELS, V2_LABELS


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {
        1: build_export(root / "v1", V1_LABELS, seed=0),
        2: build_export(root / "v2", V2_LABELS, seed=1),
    }


@pytest.fixture
def signature_calls(monkeypatch) -> list[int]:
    """The batch size of every signature call the server makes (a hook around the real call)."""
    sizes: list[int] = []
    real = ServableVersion.call_signature

    def counted(self, name, inputs):
        sizes.append(len(next(iter(inputs.values()))))
        return real(self, name, inputs)

    monkeypatch.setattr(ServableVersion, "call_signature", counted)
    return sizes
