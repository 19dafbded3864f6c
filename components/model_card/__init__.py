"""The model card: what a fine-tuned model was trained on, how it scores (with intervals, beside the
Evaluator's figures), whether it was blessed, what it is for; JSON, Markdown and report plots."""
