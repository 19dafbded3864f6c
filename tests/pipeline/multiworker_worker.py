"""One worker of the two-worker MultiWorkerMirroredStrategy test (`test_multiworker.py`).

Run from the repository root as `python -m tests.pipeline.multiworker_worker --output RESULT.json
--checkpoint-dir DIR`, with TF_CONFIG naming the cluster and this worker's index. Like the pretrain
Trainer, it takes its strategy from `trainer_common.distribution_strategy()`, builds and compiles the
tiny ALBERT pretrainer with Lamb under the strategy's scope and trains it through
`pretrain_loop.pretrain` on a `pretraining_data.tf_dataset` of synthetic documents. It writes what the
test compares across workers: the strategy, replicas in sync, steps, logs, and digests of its first
local batch and of its weights before and after training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import traceback

import numpy as np

from components.trainer import common as trainer_common

SEQ_LENGTH = 32
MAX_PREDICTIONS = 5
PER_REPLICA_BATCH = 4
SEED = 7


def synthetic_vocabulary_pieces(size: int) -> list[str]:
    """The control pieces, then `size - 5` made-up word-start and continuation pieces."""
    pieces = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    pieces += [f"\u2581w{i}" if i % 3 == 0 else f"p{i}" for i in range(size - len(pieces))]
    return pieces


def synthetic_documents(vocab_size: int, count: int = 16, seed: int = SEED) -> list[list[np.ndarray]]:
    """`count` documents of 3 to 6 sentences, each 4 to 12 random non-control ids."""
    rng = np.random.default_rng(seed)
    return [
        [rng.integers(5, vocab_size, size=int(rng.integers(4, 13))).astype(np.int32) for _ in range(n)]
        for n in rng.integers(3, 7, size=count)
    ]


def digest(values) -> str:
    """sha256 over the values in order: equal digests mean bit-identical values."""
    sha = hashlib.sha256()
    for value in values:
        sha.update(np.ascontiguousarray(np.asarray(value)).tobytes())
    return sha.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one worker of the multi-worker pretraining test")
    parser.add_argument("--output", required=True, help="where this worker writes its JSON result")
    parser.add_argument("--checkpoint-dir", required=True, help="pretrain_loop's checkpoint folder")
    parser.add_argument("--steps", type=int, default=4, help="training steps, an even number")
    args = parser.parse_args(argv)

    # Before any TF op: MultiWorkerMirroredStrategy starts this worker's collective server.
    strategy = trainer_common.distribution_strategy()

    import keras
    import tensorflow as tf

    from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
    from albert_keras.optimization import Lamb, WarmupPolynomialDecay
    from albert_keras.pretrain_loop import pretrain, repeated
    from albert_keras.pretraining_data import MaskingConfig, Vocabulary, tf_dataset

    config = AlbertConfig.preset("tiny")
    vocab = Vocabulary.from_pieces(synthetic_vocabulary_pieces(config.vocab_size))
    masking = MaskingConfig(max_seq_length=SEQ_LENGTH, max_predictions_per_seq=MAX_PREDICTIONS)
    documents = synthetic_documents(config.vocab_size)

    with strategy.scope():
        keras.utils.set_random_seed(SEED)
        model = AlbertPretrainer(AlbertBackbone(config))
        model.compile(optimizer=Lamb(WarmupPolynomialDecay(1e-2, args.steps, 1)))
    initial_weights = digest(model.weights)

    def make_dataset():
        source = tf_dataset(lambda: documents, vocab, masking, seed=SEED)
        return source.batch(PER_REPLICA_BATCH * strategy.num_replicas_in_sync, drop_remainder=True)

    # The part of the first global batch that this worker feeds, as `fit` distributes it.
    first = next(iter(strategy.experimental_distribute_dataset(make_dataset())))
    first_batch = digest(strategy.experimental_local_results(t)[0] for t in tf.nest.flatten(first))

    history = pretrain(
        model, repeated(make_dataset), total_steps=args.steps, checkpoint_dir=args.checkpoint_dir,
        steps_per_checkpoint=args.steps // 2, verbose=0,
    )  # fmt: skip
    result = {
        "multi_worker_mirrored": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
        "num_replicas_in_sync": strategy.num_replicas_in_sync,
        "steps": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "history": {name: [float(v) for v in values] for name, values in history.items()},
        "first_batch_digest": first_batch,
        "initial_weights_digest": initial_weights,
        "weights_digest": digest(model.weights),
        "optimizer_digest": digest(model.optimizer.variables),
    }
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        # A failed worker's TF runtime can keep the process alive waiting on its peer; end it now.
        os._exit(1)
