"""Checks one exported SavedModel the way a model server would meet it, in this (fresh) process.

    python -m components.serving_check.check EXPORT_DIR

Prints a JSON summary; the exit status is 1 when the model must not be pushed. The checks: every op
is in the TF Serving 2.16 allowlist; the model loads; every warmup request under assets.extra
answers what its task documents (`components/trainer/finetune.py`):
    note classification   finite probabilities in [0, 1] that sum to 1, one label name per class
    multi-label           finite probabilities in [0, 1], `predicted` 0/1 of the same shape, one label
                          name per label
    token classification  one entity count per text, entity offsets inside the text sent (code
                          points, start < end), a type for each entity, padding past the count
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def warmup_requests(export_dir: str) -> list:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{export_dir}: no warmup requests at {WARMUP_FILE}")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    return [log.predict_log.request for log in logs if log.HasField("predict_log")]


def check_export(export_dir: str) -> dict:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops, as the model server links them)

    from serving.op_allowlist import check_saved_model

    problems = []
    ops = check_saved_model(export_dir)
    if ops.disallowed:
        problems.append(f"ops missing from TF Serving 2.16: {list(ops.disallowed)}")
    loaded = tf.saved_model.load(export_dir)
    requests = warmup_requests(export_dir)
    if not requests:
        problems.append("no Predict warmup requests")
    answered = 0
    for index, request in enumerate(requests):
        name = request.model_spec.signature_name or "serving_default"
        if name not in loaded.signatures:
            problems.append(f"warmup request {index}: no signature {name!r}")
            continue
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = {k: v.numpy() for k, v in loaded.signatures[name](**inputs).items()}
        texts = [t.decode("utf-8") for t in tf.make_ndarray(request.inputs["text"]).reshape(-1)]
        problems += [f"warmup request {index}: {problem}" for problem in answer_problems(texts, outputs)]
        answered += 1
    return {"ops_used": len(ops.ops_used), "requests_answered": answered, "problems": problems}


def answer_problems(texts: list[str], outputs: dict[str, np.ndarray]) -> list[str]:
    """What is wrong with a serving_default answer to `texts`, by the outputs its task documents."""
    if "num_entities" in outputs:
        return _entity_problems(texts, outputs)
    missing = [key for key in ("probabilities", "label_names") if key not in outputs]
    if missing:
        return [f"no {missing} outputs"]
    problems = []
    probabilities, names = outputs["probabilities"], outputs["label_names"]
    if probabilities.shape[0] != len(texts):
        problems.append(f"{probabilities.shape[0]} rows of probabilities for {len(texts)} texts")
    if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0 or probabilities.max() > 1:
        problems.append("probabilities not finite in [0, 1]")
    elif "predicted" in outputs:
        predicted = outputs["predicted"]
        if predicted.shape != probabilities.shape or not np.isin(predicted, (0, 1)).all():
            problems.append(f"predicted must be 0/1 of shape {probabilities.shape}, got {predicted.shape}")
    elif not np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-4):
        problems.append("probabilities do not sum to 1")
    if names.shape[-1] != probabilities.shape[-1]:
        problems.append(f"{names.shape[-1]} label names, {probabilities.shape[-1]} classes")
    return problems


def _entity_problems(texts: list[str], outputs: dict[str, np.ndarray]) -> list[str]:
    keys = ("num_entities", "entity_starts", "entity_ends", "entity_types", "entity_scores")
    missing = [key for key in keys if key not in outputs]
    if missing:
        return [f"no {missing} outputs"]
    counts = outputs["num_entities"]
    if counts.shape != (len(texts),):
        return [f"num_entities has shape {counts.shape} for {len(texts)} texts"]
    problems = []
    for row, text in enumerate(texts):
        n = int(counts[row])
        starts, ends = outputs["entity_starts"][row], outputs["entity_ends"][row]
        if n > len(starts):
            problems.append(f"text {row}: {n} entities in {len(starts)} columns")
            continue
        if not ((starts[:n] >= 0) & (starts[:n] < ends[:n]) & (ends[:n] <= len(text))).all():
            problems.append(f"text {row}: entity offsets outside its {len(text)} characters")
        if (starts[n:] != -1).any() or (outputs["entity_types"][row][n:] != b"").any():
            problems.append(f"text {row}: padding past num_entities")
        if (outputs["entity_types"][row][:n] == b"").any():
            problems.append(f"text {row}: an entity without a type")
        scores = outputs["entity_scores"][row][:n]
        if not (np.isfinite(scores) & (scores >= 0) & (scores <= 1)).all():
            problems.append(f"text {row}: entity scores not in [0, 1]")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m components.serving_check.check EXPORT_DIR", file=sys.stderr)
        return 2
    summary = check_export(argv[0])
    print(json.dumps(summary))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
