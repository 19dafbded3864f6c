"""Two small components around TFX's ExampleValidator. (No `from __future__ import annotations`
here: TFX's @component reads the annotations as types.)

`TokenSchemaGen` turns the schema that Transform inferred for its outputs into one with token-level
constraints (in the spirit of tfx/examples/bert): exactly one `[CLS]` per packed note, and a cap on
the share of `<unk>` ids. ExampleValidator then checks the post-transform statistics against it like
any other constraint.

`AnomalyGate` reads the anomalies of both validators and fails the run when there are any and the
configuration says anomalies stop it; the trainers run after it. Either way it records what it found.
With the tokenizer as input it also checks a reused vocabulary's drift on the new data: an `<unk>` rate
that rose, or words split into more pieces than when the vocabulary was trained, past the configured
bounds, is an anomaly like the others (the remedy, a new vocabulary_version, is the operator's call).
"""

import json
import os

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.sentencepiece_tokenizer.component import SentencePieceModel

SCHEMA_FILE = "schema.pbtxt"


def _read_schema(uri: str):
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx.utils import io_utils

    return io_utils.parse_pbtxt_file(os.path.join(uri, SCHEMA_FILE), schema_pb2.Schema())


def add_token_constraints(schema, max_unk_fraction: float):
    """The schema with `num_cls` fixed at 1 and `unk_fraction` at most `max_unk_fraction`."""
    features = {feature.name: feature for feature in schema.feature}
    missing = [name for name in ("num_cls", "unk_fraction") if name not in features]
    if missing:
        raise ValueError(f"the transformed schema lacks the token-check features {missing}")
    features["num_cls"].int_domain.min = 1
    features["num_cls"].int_domain.max = 1
    features["unk_fraction"].float_domain.min = 0.0
    features["unk_fraction"].float_domain.max = max_unk_fraction
    return schema


@component
def TokenSchemaGen(
    transformed_schema: InputArtifact[standard_artifacts.Schema],
    schema: OutputArtifact[standard_artifacts.Schema],
    max_unk_fraction: Parameter[float] = 0.05,
) -> None:
    from tfx.utils import io_utils

    constrained = add_token_constraints(_read_schema(transformed_schema.uri), max_unk_fraction)
    io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE), constrained)


def anomaly_summary(anomalies_uri: str) -> dict[str, list[str]]:
    """Split name -> "feature: short description" for every anomaly ExampleValidator recorded."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found = {}
    for split_dir in sorted(tf.io.gfile.listdir(anomalies_uri)):
        path = os.path.join(anomalies_uri, split_dir.rstrip("/"), "SchemaDiff.pb")
        if not tf.io.gfile.exists(path):
            continue
        with tf.io.gfile.GFile(path, "rb") as f:
            anomalies = anomalies_pb2.Anomalies.FromString(f.read())
        problems = [
            f"{name}: {info.short_description}" for name, info in sorted(anomalies.anomaly_info.items())
        ]
        if anomalies.HasField("dataset_anomaly_info"):
            problems.append(f"dataset: {anomalies.dataset_anomaly_info.short_description}")
        if problems:
            found[split_dir.rstrip("/").removeprefix("Split-")] = problems
    return found


def vocabulary_drift(
    drift: dict, max_unk_rate_increase: float, max_pieces_per_word_ratio: float
) -> list[str]:
    """The bounds that a reused vocabulary's drift (the tokenizer's `drift` property) exceeds."""
    problems = []
    if drift["unk_rate_increase"] > max_unk_rate_increase:
        problems.append(
            f"<unk> rate rose by {drift['unk_rate_increase']:.4f} since the vocabulary was trained "
            f"(bound {max_unk_rate_increase})"
        )
    if drift["pieces_per_word_ratio"] > max_pieces_per_word_ratio:
        problems.append(
            f"pieces per word are {drift['pieces_per_word_ratio']:.3f} times the vocabulary's own "
            f"(bound {max_pieces_per_word_ratio})"
        )
    return problems


@component
def AnomalyGate(
    raw_anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    token_anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    # An optional input: TFX's function components mark one by its default None.
    tokenizer: InputArtifact[SentencePieceModel] = None,
    stop_on_anomalies: Parameter[int] = 1,
    max_unk_rate_increase: Parameter[float] = 0.01,
    max_pieces_per_word_ratio: Parameter[float] = 1.15,
) -> tfx.dsl.components.OutputDict(anomalies=int):
    from absl import logging

    found = {
        f"{kind} {split}": problems
        for kind, uri in (("raw", raw_anomalies.uri), ("token", token_anomalies.uri))
        for split, problems in anomaly_summary(uri).items()
    }
    if tokenizer is not None and tokenizer.has_custom_property("drift"):
        drift = json.loads(tokenizer.get_string_custom_property("drift"))
        problems = vocabulary_drift(drift, max_unk_rate_increase, max_pieces_per_word_ratio)
        if problems:
            found["vocabulary"] = problems
    for where, problems in found.items():
        logging.warning("anomalies in %s: %s", where, "; ".join(problems))
    if found and stop_on_anomalies:
        details = " | ".join(f"{where}: {'; '.join(problems)}" for where, problems in found.items())
        raise RuntimeError(f"ExampleValidator found anomalies, and stop_on_anomalies is set: {details}")
    return {"anomalies": sum(len(p) for p in found.values())}
