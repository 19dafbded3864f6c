"""Run by test_pretrain_loop.py: pretrains a tiny model, optionally dying at a given step.

python -m tests.albert_keras.pretrain_worker CHECKPOINT_DIR TOTAL_STEPS EVERY DIE_AT_STEP OUT.weights.h5
"""

import os
import sys

import keras

from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
from albert_keras.optimization import Lamb, WarmupPolynomialDecay
from albert_keras.pretrain_loop import pretrain, repeated
from albert_keras.pretraining_data import MaskingConfig, tf_dataset
from tests.albert_keras.test_pretraining_data import VOCAB, synthetic_corpus

# The tiny preset's dropout (0.1) stays on: a resumed run must draw the masks an unbroken one draws.
CONFIG = AlbertConfig.preset("tiny", vocab_size=len(VOCAB.pieces))


class Die(keras.callbacks.Callback):
    """Ends the process abruptly after batch `step` (counted over the whole run), as a kill would."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == self.step:
            os._exit(3)


def main(checkpoint_dir, total_steps, every, die_at, out) -> None:
    keras.utils.set_random_seed(0)
    model = AlbertPretrainer(AlbertBackbone(CONFIG))
    model.compile(optimizer=Lamb(WarmupPolynomialDecay(1e-2, total_steps=int(total_steps), warmup_steps=2)))
    masking = MaskingConfig(max_seq_length=32, max_predictions_per_seq=5)
    history = pretrain(
        model,
        repeated(lambda: tf_dataset(lambda: synthetic_corpus(20), VOCAB, masking, seed=1).batch(4)),
        total_steps=int(total_steps),
        checkpoint_dir=checkpoint_dir,
        steps_per_checkpoint=int(every),
        callbacks=[Die(int(die_at))] if int(die_at) > 0 else [],
        verbose=0,
    )
    print("metrics:", sorted(history))
    model.save_weights(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
