"""ALBERT's configuration: google-research/albert's `albert_config.json`, as a dataclass.

The field names are the contract with published checkpoints: a google-research `albert_config.json`
(or the ALBERT part of a HF `config.json`) loads with `AlbertConfig.from_json`, and `to_json` writes a
file those tools read back. Invalid combinations fail at construction, naming the values received.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

#: `hidden_act` values. Naming follows HF: "gelu" is the exact erf form, "gelu_new" the tanh
#: approximation that google-research's ALBERT code computes (and calls "gelu").
ACTIVATIONS = ("gelu_new", "gelu", "relu", "tanh", "swish", "silu")

#: Cross-layer sharing patterns (the ALBERT paper, Table 4). "all" is ALBERT proper: every virtual
#: layer i reuses the blocks of group int(i / num_hidden_layers * num_hidden_groups). "attention" and
#: "ffn" share only that sub-layer by group and give every layer its own other one; "none" is BERT-like.
SHARING_MODES = ("all", "none", "attention", "ffn")

# Fields of google-research's config that describe experimental structures this implementation does
# not build. Accepted when they hold the value that means "standard ALBERT", rejected otherwise.
_INERT_GOOGLE_FIELDS = {
    "net_structure_type": 0,
    "gap_size": 0,
    "num_memory_blocks": 0,
    "down_scale_factor": 1,
    "layers_to_keep": [],
}
# Fields of a HF `config.json` that carry no information for the backbone.
_IGNORED_HF_FIELDS = {
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "position_embedding_type",
    "classifier_dropout_prob",
    "output_past",
    "_name_or_path",
}


@dataclasses.dataclass(frozen=True)
class AlbertConfig:
    """Architecture of one ALBERT model. Defaults are albert-base-v2."""

    #: SentencePiece vocabulary size; rows of the word-embedding matrix and of the MLM decoder.
    vocab_size: int = 30000
    #: E, the factorized embedding width; projected to hidden_size before the first layer.
    embedding_size: int = 128
    #: H, the width of every transformer layer and of the pooler.
    hidden_size: int = 768
    #: Virtual layers: how many times a block is applied in one forward pass.
    num_hidden_layers: int = 12
    #: Distinct parameter groups shared across the virtual layers (1 = everything shared).
    num_hidden_groups: int = 1
    #: Post-LN blocks applied in sequence inside each group, each with its own weights.
    inner_group_num: int = 1
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = 512
    #: Segment (token type) ids: 2 for sentence A / sentence B.
    type_vocab_size: int = 2
    #: Standard deviation of the truncated-normal initializer.
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    #: Cross-layer sharing pattern; see SHARING_MODES. Not in google's file; "all" when absent.
    sharing: str = "all"

    def __post_init__(self) -> None:
        errors = []
        for name in (
            "vocab_size",
            "embedding_size",
            "hidden_size",
            "num_hidden_layers",
            "num_hidden_groups",
            "inner_group_num",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                errors.append(f"{name} must be a positive integer, received {name}={value!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                errors.append(f"{name} must be in [0, 1), received {name}={value!r}")
        if not isinstance(self.initializer_range, (int, float)) or self.initializer_range <= 0:
            errors.append(
                f"initializer_range must be > 0, received initializer_range={self.initializer_range!r}"
            )
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            errors.append(f"layer_norm_eps must be > 0, received layer_norm_eps={self.layer_norm_eps!r}")
        if self.hidden_act not in ACTIVATIONS:
            errors.append(f"hidden_act must be one of {ACTIVATIONS}, received hidden_act={self.hidden_act!r}")
        if self.sharing not in SHARING_MODES:
            errors.append(f"sharing must be one of {SHARING_MODES}, received sharing={self.sharing!r}")
        if errors:
            raise ValueError("Invalid AlbertConfig: " + "; ".join(errors))

        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                "Invalid AlbertConfig: hidden_size must be divisible by num_attention_heads, received "
                f"hidden_size={self.hidden_size} and num_attention_heads={self.num_attention_heads}"
            )
        if self.num_hidden_groups > self.num_hidden_layers:
            raise ValueError(
                "Invalid AlbertConfig: num_hidden_groups cannot exceed num_hidden_layers (a group no "
                f"layer uses), received num_hidden_groups={self.num_hidden_groups} and "
                f"num_hidden_layers={self.num_hidden_layers}"
            )
        if self.sharing == "none" and self.num_hidden_groups != 1:
            raise ValueError(
                "Invalid AlbertConfig: sharing='none' gives every layer its own weights, so groups "
                f"have no meaning; received num_hidden_groups={self.num_hidden_groups} (use 1)"
            )

    # -- structure -----------------------------------------------------------------------------

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def group_of_layer(self, layer_index: int) -> int:
        """The group that virtual layer `layer_index` uses, as google-research computes it."""
        return int(layer_index / self.num_hidden_layers * self.num_hidden_groups)

    # -- serialization ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AlbertConfig:
        """Builds a config from google-research or HF field names; unknown names are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        unknown = []
        for name, value in values.items():
            if name in known:
                kwargs[name] = value
            elif name in _INERT_GOOGLE_FIELDS:
                if value != _INERT_GOOGLE_FIELDS[name]:
                    raise ValueError(
                        f"Unsupported ALBERT variant: {name}={value!r} (only "
                        f"{name}={_INERT_GOOGLE_FIELDS[name]!r}, standard ALBERT, is implemented)"
                    )
            elif name not in _IGNORED_HF_FIELDS:
                unknown.append(name)
        if unknown:
            raise ValueError(f"Unknown AlbertConfig fields: {sorted(unknown)}")
        return cls(**kwargs)

    @classmethod
    def from_google_dict(cls, values: dict[str, Any]) -> AlbertConfig:
        """Builds a config from google-research's `albert_config.json` contents.

        Its "gelu" is the tanh approximation (google-research's modeling.py computes it so), which
        is "gelu_new" here; every other field means the same in both.
        """
        if values.get("hidden_act") == "gelu":
            values = {**values, "hidden_act": "gelu_new"}
        return cls.from_dict(values)

    @classmethod
    def from_json(cls, text: str) -> AlbertConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_json_file(cls, path: str) -> AlbertConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    def replace(self, **changes: Any) -> AlbertConfig:
        return dataclasses.replace(self, **changes)

    # -- presets -------------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> AlbertConfig:
        """A named configuration: base/large/xlarge/xxlarge with a -v1 or -v2 suffix, or tiny."""
        if name not in PRESETS:
            raise ValueError(f"Unknown ALBERT preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


_SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "xlarge": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192),
    "xxlarge": dict(hidden_size=4096, num_hidden_layers=12, num_attention_heads=64, intermediate_size=16384),
}
# v1 trained with dropout 0.1; v2 ("no dropout" in the ALBERT README's v2 notes) with 0.
_DROPOUT = {"v1": 0.1, "v2": 0.0}

PRESETS: dict[str, dict[str, Any]] = {
    f"{size}-{version}": {
        **dims,
        "hidden_dropout_prob": rate,
        "attention_probs_dropout_prob": rate,
    }
    for size, dims in _SIZES.items()
    for version, rate in _DROPOUT.items()
}
# Small enough for unit tests on CPU, large enough to exercise groups and inner blocks.
PRESETS["tiny"] = dict(
    vocab_size=128,
    embedding_size=16,
    hidden_size=32,
    num_hidden_layers=4,
    num_hidden_groups=2,
    inner_group_num=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
)
# A bare size means its v2 settings, as "albert-base" does in the hubs.
PRESETS.update({size: PRESETS[f"{size}-v2"] for size in _SIZES})
