"""The Trainers' code: pretraining (`pretrain`), fine-tuning (`finetune`), what they share (`common`)
and their progress reports (`progress`). TFX loads `pretrain.run_fn` and `finetune.run_fn`."""
