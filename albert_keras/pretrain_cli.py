"""Pretrain ALBERT outside the pipeline, from text files and a SentencePiece model.

    python -m albert_keras.pretrain_cli --corpus 'notes/*.txt' --spm-model sp.model \\
        --preset base-v2 --steps 10000 --batch 64 --seq 128 --backend jax --out runs/base

Corpus: text files (google-research's format: one sentence per line, a blank line between
documents), or TFRecord files of tokenized instances (`*.tfrecord`, `*.tfrecord.gz`: google-research's
features, as `python -m albert_keras.pretraining_records` writes them), whose lengths must equal --seq
and --max-predictions. The SentencePiece model must hold ALBERT's [CLS], [SEP] and [MASK] pieces; with
records it only sets the vocabulary size. Re-running the same command
resumes from the newest checkpoint in OUT/checkpoints. Nothing from the corpus is printed: only
counts and metrics.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", required=True, nargs="+", help="text or TFRecord files, or glob patterns")
    parser.add_argument("--spm-model", required=True, help="SentencePiece model file")
    parser.add_argument("--out", required=True, help="output folder: checkpoints, final model, config")
    parser.add_argument("--preset", default="base-v2", help="ALBERT preset (default: base-v2)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128, help="max_seq_length")
    parser.add_argument("--max-predictions", type=int, default=20, help="max_predictions_per_seq")
    parser.add_argument("--learning-rate", type=float, default=1.76e-3, help="peak LAMB learning rate")
    parser.add_argument("--warmup-steps", type=int, default=None, help="default: 10%% of --steps")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="default: --steps / 10")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default=None)
    parser.add_argument("--seed", type=int, default=12345)
    return parser.parse_args(argv)


def _reexec_with_backend(backend: str, argv: list[str]) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend}
    os.execve(sys.executable, [sys.executable, "-m", "albert_keras.pretrain_cli", *argv], env)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import keras  # after parsing: --backend must be in the environment before Keras starts

    if args.backend and args.backend != keras.backend.backend():
        _reexec_with_backend(args.backend, argv)

    import sentencepiece

    from albert_keras import AlbertBackbone, AlbertConfig, AlbertPretrainer
    from albert_keras.optimization import Lamb, WarmupPolynomialDecay
    from albert_keras.pretrain_loop import pretrain, repeated
    from albert_keras.pretraining_data import MaskingConfig, Vocabulary, read_documents, tf_dataset
    from albert_keras.pretraining_records import is_record_file
    from albert_keras.pretraining_records import records_dataset as read_records

    paths = sorted({p for pattern in args.corpus for p in glob.glob(pattern)})
    if not paths:
        raise SystemExit(f"error: --corpus matched no file: {args.corpus}")
    processor = sentencepiece.SentencePieceProcessor(model_file=args.spm_model)
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
    vocab = Vocabulary.from_pieces(pieces)
    config = AlbertConfig.preset(args.preset, vocab_size=len(pieces))
    if args.seq > config.max_position_embeddings:
        positions = config.max_position_embeddings
        raise SystemExit(f"error: --seq {args.seq} exceeds the preset's {positions} positions")
    masking = MaskingConfig(max_seq_length=args.seq, max_predictions_per_seq=args.max_predictions)
    every = args.checkpoint_every or max(1, args.steps // 10)
    warmup = args.steps // 10 if args.warmup_steps is None else args.warmup_steps
    records = [is_record_file(p) for p in paths]
    if any(records) and not all(records):
        raise SystemExit("error: --corpus mixes TFRecord and text files; give one kind")
    if all(records):
        read_records(paths, args.seq, args.max_predictions)  # checks every file before training
        source = f"{len(paths)} TFRecord files"
    else:
        source = f"{len(paths)} files, {sum(1 for _ in read_documents(paths, processor))} documents"
    print(f"backend {keras.backend.backend()}; {source}; vocabulary {len(pieces)}")

    keras.utils.set_random_seed(args.seed)
    model = AlbertPretrainer(AlbertBackbone(config))
    model.compile(optimizer=Lamb(WarmupPolynomialDecay(args.learning_rate, args.steps, warmup)))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "albert_config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json())

    def make_dataset():
        if all(records):
            source = read_records(paths, args.seq, args.max_predictions)
        else:
            source = tf_dataset(lambda: read_documents(paths, processor), vocab, masking, seed=args.seed)
        return source.shuffle(10_000, seed=args.seed).batch(args.batch, drop_remainder=True)

    history = pretrain(
        model,
        repeated(make_dataset),
        total_steps=args.steps,
        checkpoint_dir=os.path.join(args.out, "checkpoints"),
        steps_per_checkpoint=every,
        verbose=1,
    )
    model.save(os.path.join(args.out, "pretrainer.keras"))
    if history:
        summary = ", ".join(f"{k} {v[-1]:.4f}" for k, v in sorted(history.items()))
        print(f"step {args.steps}: {summary}")
    print(f"saved {os.path.join(args.out, 'pretrainer.keras')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
