"""The tokenizer component: trains ALBERT's SentencePiece model on the training split, and the in-graph
tokenization and packing that the Transform graph (and so the served model) uses."""
