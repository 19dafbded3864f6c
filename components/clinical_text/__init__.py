"""Clinical text processing shared by ingestion and the tokenizer: normalization, de-identification
placeholders and scrubbing, sentence segmentation. Plain Python; no TFX."""
