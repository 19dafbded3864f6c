"""Where the fine-tuning Trainer puts the two copies of its model inside the Model artifact.

TFX 1.16's Evaluator loads a TF2 model from the artifact's serving folder (`Format-Serving`; its
`eval_model_dir` is read only for Estimator EvalSavedModels), and needs the Evaluator's signatures
there (`transform_features` has sparse outputs, which no Predict call can return). What clients may
call is a narrower copy: the client signatures only, every output dense and batched, with TF Serving's
warmup requests. That copy sits beside the full one, in `CLIENT_COPY_DIR`; the Pusher pushes it and
ServingCheck checks it. A Model artifact without one (the pretraining Trainer's, or one written before
this layout) falls back to its serving folder.

The fine-tuned Keras weights sit in a third folder, `KERAS_DIR` (`classifier.weights.h5` and
`classifier.json`: task, label names, vocabulary, backbone config), so that a later run can warm-start
from a blessed model; nothing serves from it.
"""

from __future__ import annotations

import os

from tfx.dsl.io import fileio
from tfx.utils import path_utils

CLIENT_COPY_DIR = "Format-Serving-Clients"
KERAS_DIR = "Format-Keras"


def client_copy_dir(serving_model_dir: str) -> str:
    """Where the Trainer writes the client copy, given its `fn_args.serving_model_dir`."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), CLIENT_COPY_DIR)


def keras_dir(serving_model_dir: str) -> str:
    """Where the Trainer writes the Keras weights, given its `fn_args.serving_model_dir`."""
    return os.path.join(os.path.dirname(serving_model_dir.rstrip("/")), KERAS_DIR)


def client_model_path(model_uri: str) -> str:
    """The folder to push and serve for a Model artifact at `model_uri`."""
    client = os.path.join(model_uri, CLIENT_COPY_DIR)
    if fileio.exists(os.path.join(client, "saved_model.pb")):
        return client
    return path_utils.serving_model_path(model_uri)
