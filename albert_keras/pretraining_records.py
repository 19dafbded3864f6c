"""Tokenized pretraining instances in TFRecord files, in google-research/albert's format.

Masking and sentence pairing cost Python time on every pass over a corpus; writing the instances
once lets a GPU run read them at the speed of `tf.data`. The feature names and meanings are those of
google-research's `create_pretraining_data.py`, so records made by its script load here too:

    input_ids, input_mask, segment_ids   int64 (max_seq_length,)
    masked_lm_positions, masked_lm_ids   int64 (max_predictions_per_seq,)
    masked_lm_weights                    float (max_predictions_per_seq,)
    next_sentence_labels                 int64 (1,)   1 = segments swapped (sentence order)
    token_boundary                       int64 (max_seq_length,), optional; not used here

Make records from text files (one sentence per line, a blank line between documents):

    python -m albert_keras.pretraining_records --corpus 'notes/*.txt' --spm-model sp.model \\
        --out records/train.tfrecord --seq 128 --max-predictions 20 --dupe-factor 5
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Iterable

import numpy as np

_INT_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids")
# google-research name -> ours; the targets are split off by `split_features_and_targets`.
_NAMES = {
    "input_ids": "token_ids",
    "input_mask": "padding_mask",
    "segment_ids": "segment_ids",
    "masked_lm_positions": "mask_positions",
    "masked_lm_ids": "mlm_labels",
    "masked_lm_weights": "mlm_weights",
    "next_sentence_labels": "sop_labels",
}


def instance_to_example(instance: dict[str, np.ndarray]) -> bytes:
    """One instance of `create_instances` as a serialized tf.train.Example."""
    import tensorflow as tf

    def ints(values) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.ravel(values).tolist()))

    feature = {google: ints(instance[ours]) for google, ours in _NAMES.items() if google in _INT_FEATURES}
    feature["masked_lm_weights"] = tf.train.Feature(
        float_list=tf.train.FloatList(value=np.ravel(instance["mlm_weights"]).tolist())
    )
    feature["next_sentence_labels"] = ints(instance["sop_labels"])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(instances: Iterable[dict[str, np.ndarray]], path: str) -> int:
    """Writes instances to one TFRecord file (GZIP when the name ends in .gz); returns the count."""
    import tensorflow as tf

    count = 0
    options = "GZIP" if path.endswith(".gz") else None
    with tf.io.TFRecordWriter(path, options=options) as writer:
        for instance in instances:
            writer.write(instance_to_example(instance))
            count += 1
    return count


def record_shapes(path: str) -> tuple[int, int]:
    """(max_seq_length, max_predictions_per_seq) of the first record in a file."""
    import tensorflow as tf

    compression = "GZIP" if path.endswith(".gz") else None
    for raw in tf.data.TFRecordDataset(path, compression_type=compression).take(1):
        example = tf.train.Example.FromString(raw.numpy())
        features = example.features.feature
        missing = [name for name in _NAMES if name not in features]
        if missing:
            raise ValueError(f"{path}: the first record lacks pretraining features {missing}")
        return len(features["input_ids"].int64_list.value), len(features["masked_lm_ids"].int64_list.value)
    raise ValueError(f"{path}: no records")


def records_dataset(paths: list[str], max_seq_length: int, max_predictions_per_seq: int):
    """A `tf.data.Dataset` of (x, y) for `AlbertPretrainer.fit`, read from TFRecord files.

    Every file's first record is checked against the requested lengths, so a mismatch is an error
    that names the file rather than a parse failure deep in a training step.
    """
    import tensorflow as tf

    for path in paths:
        shapes = record_shapes(path)
        if shapes != (max_seq_length, max_predictions_per_seq):
            raise ValueError(
                f"{path}: records have max_seq_length {shapes[0]} and max_predictions_per_seq "
                f"{shapes[1]}; expected {max_seq_length} and {max_predictions_per_seq}"
            )
    seq, preds = max_seq_length, max_predictions_per_seq
    spec = {
        "input_ids": tf.io.FixedLenFeature([seq], tf.int64),
        "input_mask": tf.io.FixedLenFeature([seq], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([seq], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([preds], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([preds], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([preds], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }

    def parse(raw):
        parsed = tf.io.parse_single_example(raw, spec)
        out = {ours: tf.cast(parsed[google], tf.int32) for google, ours in _NAMES.items()}
        out["mlm_weights"] = parsed["masked_lm_weights"]
        out["sop_labels"] = tf.reshape(out["sop_labels"], ())
        x = {k: out[k] for k in ("token_ids", "segment_ids", "padding_mask", "mask_positions")}
        y = {k: out[k] for k in ("mlm_labels", "mlm_weights", "sop_labels")}
        return x, y

    by_compression: dict[str | None, list[str]] = {}
    for path in paths:
        by_compression.setdefault("GZIP" if path.endswith(".gz") else None, []).append(path)
    datasets = [tf.data.TFRecordDataset(files, compression_type=c) for c, files in by_compression.items()]
    dataset = datasets[0]
    for other in datasets[1:]:
        dataset = dataset.concatenate(other)
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def is_record_file(path: str) -> bool:
    return path.endswith((".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", required=True, nargs="+", help="text files or glob patterns")
    parser.add_argument("--spm-model", required=True, help="SentencePiece model file")
    parser.add_argument("--out", required=True, help="output TFRecord file (.gz: GZIP)")
    parser.add_argument("--seq", type=int, default=128, help="max_seq_length")
    parser.add_argument("--max-predictions", type=int, default=20, help="max_predictions_per_seq")
    parser.add_argument("--dupe-factor", type=int, default=1, help="passes over the corpus, each masked anew")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)

    import sentencepiece

    from albert_keras.pretraining_data import MaskingConfig, Vocabulary, create_instances, read_documents

    paths = sorted({p for pattern in args.corpus for p in glob.glob(pattern)})
    if not paths:
        raise SystemExit(f"error: --corpus matched no file: {args.corpus}")
    processor = sentencepiece.SentencePieceProcessor(model_file=args.spm_model)
    vocab = Vocabulary.from_pieces([processor.id_to_piece(i) for i in range(processor.get_piece_size())])
    masking = MaskingConfig(
        max_seq_length=args.seq, max_predictions_per_seq=args.max_predictions, dupe_factor=args.dupe_factor
    )
    instances = create_instances(read_documents(paths, processor), vocab, masking, args.seed)
    count = write_records(instances, args.out)
    print(f"wrote {count} instances from {len(paths)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
