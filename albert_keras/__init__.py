"""ALBERT (A Lite BERT) in Keras 3, on any backend.

The model library of the clinical ALBERT pipeline. It knows nothing of TFX and imports no
TensorFlow itself: under KERAS_BACKEND=jax or torch it runs without TensorFlow installed.
Importing it registers every class a saved model may name (layers, models, optimizer, schedule),
so that `keras.saving.load_model` finds them.
"""

from albert_keras.backbone import AlbertBackbone
from albert_keras.config import PRESETS, AlbertConfig
from albert_keras.heads import MaskedLMHead, SentenceOrderHead
from albert_keras.optimization import Lamb, WarmupPolynomialDecay
from albert_keras.pretraining import AlbertPretrainer
from albert_keras.tasks import (
    IGNORE_LABEL,
    AlbertClassifier,
    AlbertMultipleChoice,
    AlbertQuestionAnswering,
    AlbertTokenClassifier,
    bio_labels,
)

__all__ = [
    "IGNORE_LABEL",
    "PRESETS",
    "AlbertBackbone",
    "AlbertClassifier",
    "AlbertConfig",
    "AlbertMultipleChoice",
    "AlbertPretrainer",
    "AlbertQuestionAnswering",
    "AlbertTokenClassifier",
    "Lamb",
    "MaskedLMHead",
    "SentenceOrderHead",
    "WarmupPolynomialDecay",
    "bio_labels",
]
