"""Checks one exported SavedModel the way a model server would meet it, in this (fresh) process.

    python -m components.serving_check.check EXPORT_DIR

Prints a JSON summary; the exit status is 1 when the model must not be pushed. The checks: every op
is in the TF Serving 2.16 allowlist; the model loads; every warmup request under assets.extra
answers, with finite probabilities in [0, 1] that sum to 1 and one label name per class.
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
        outputs = loaded.signatures[name](**inputs)
        probabilities = outputs["probabilities"].numpy()
        names = outputs["label_names"].numpy()
        if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0 or probabilities.max() > 1:
            problems.append(f"warmup request {index}: probabilities not finite in [0, 1]")
        elif not np.allclose(probabilities.sum(axis=-1), 1.0, atol=1e-4):
            problems.append(f"warmup request {index}: probabilities do not sum to 1")
        if names.shape[-1] != probabilities.shape[-1]:
            problems.append(
                f"warmup request {index}: {names.shape[-1]} label names, {probabilities.shape[-1]} classes"
            )
        answered += 1
    return {"ops_used": len(ops.ops_used), "requests_answered": answered, "problems": problems}


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
