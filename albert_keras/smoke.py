"""A tiny ALBERT pretraining step on random data: proves the install works on this machine."""

from __future__ import annotations

import keras
import numpy as np

from albert_keras.backbone import AlbertBackbone
from albert_keras.config import AlbertConfig
from albert_keras.pretraining import AlbertPretrainer, pretraining_losses


def random_pretraining_batch(config: AlbertConfig, batch: int, seq: int, predictions: int, seed: int = 0):
    """Random (x, y) in the pretrainer's format, with some padding in every other row."""
    rng = np.random.default_rng(seed)
    lengths = np.where(np.arange(batch) % 2 == 0, seq, seq // 2)
    padding_mask = (np.arange(seq)[None, :] < lengths[:, None]).astype("int32")
    token_ids = rng.integers(5, config.vocab_size, size=(batch, seq)).astype("int32") * padding_mask
    segment_ids = ((np.arange(seq)[None, :] >= lengths[:, None] // 2) * padding_mask).astype("int32")
    mask_positions = np.stack(
        [np.sort(rng.choice(np.arange(1, length), size=predictions, replace=False)) for length in lengths]
    ).astype("int32")
    x = {
        "token_ids": token_ids,
        "segment_ids": segment_ids,
        "padding_mask": padding_mask,
        "mask_positions": mask_positions,
    }
    y = {
        "mlm_labels": np.take_along_axis(token_ids, mask_positions, axis=1),
        "mlm_weights": np.ones((batch, predictions), "float32"),
        "sop_labels": rng.integers(0, 2, size=(batch,)).astype("int32"),
    }
    return x, y


def run(preset: str = "tiny", batch: int = 4, seq: int = 32, predictions: int = 5) -> dict[str, float]:
    """Builds the model, runs a forward pass and one training step; prints shapes and losses."""
    keras.utils.set_random_seed(0)
    config = AlbertConfig.preset(preset)
    model = AlbertPretrainer(AlbertBackbone(config))
    x, y = random_pretraining_batch(config, batch, seq, predictions)

    print(f"backend: {keras.backend.backend()}, preset: {preset}")
    print(f"backbone parameters: {model.backbone.count_params():,}; with heads: {model.count_params():,}")
    outputs = model(x, training=False)
    encoded = model.backbone({k: x[k] for k in ("token_ids", "segment_ids", "padding_mask")})
    for name, value in {**encoded, **outputs}.items():
        print(f"{name}: {tuple(value.shape)}")
    mlm_loss, sop_loss = pretraining_losses(y, outputs)
    chance = np.log(config.vocab_size)
    print(f"initial loss: mlm {float(mlm_loss):.4f} (ln(vocab) = {chance:.4f}), sop {float(sop_loss):.4f}")

    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3))
    logs = model.train_on_batch(x, y, return_dict=True)
    loss = float(logs["loss"])
    print(f"training step: mlm accuracy {float(logs['mlm_accuracy']):.4f}, loss {loss:.4f}")
    return {"mlm_loss": float(mlm_loss), "sop_loss": float(sop_loss), "train_loss": loss}
