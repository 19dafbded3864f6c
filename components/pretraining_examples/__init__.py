"""The PretrainingExamples component: ALBERT pretraining instances (sentence-order pairs, n-gram
masks) made once by Beam from the Transform's tokenized notes, and written as Parquet that the
pretraining Trainer reads without TensorFlow."""
