"""TFX's Transform and Trainer, each with one more input: the trained SentencePiece tokenizer."""
