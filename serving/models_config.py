"""TF Serving's `models.config` (a `ModelServerConfig` text proto), read into plain frozen objects.

Only what the local server uses is kept: each model's name, base path and version policy. A file
that names `custom_model_config`, a platform other than tensorflow, or the same model twice is
refused, so the local server never silently serves something other than what the file says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions under a base path are served: the latest `num_versions`, a fixed set, or all."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("latest", "specific", "all"):
            raise ValueError(f"version policy must be latest, specific or all; got {self.kind!r}")
        if self.kind == "latest" and self.num_versions < 1:
            raise ValueError(f"latest policy needs num_versions >= 1; got {self.num_versions}")
        if self.kind == "specific" and not self.versions:
            raise ValueError("specific policy needs at least one version")

    def select(self, on_disk: list[int]) -> list[int]:
        """The versions, among those found on disk, that this policy wants served (ascending)."""
        found = sorted(set(on_disk))
        if self.kind == "latest":
            return found[-self.num_versions :]
        if self.kind == "specific":
            return [v for v in found if v in self.versions]
        return found


@dataclass(frozen=True)
class ModelEntry:
    """One served model: its name in requests and the folder holding its `<version>/` exports."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()


def _policy(proto) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")
    if choice == "specific":
        return VersionPolicy("specific", versions=tuple(int(v) for v in proto.specific.versions))
    if choice == "all":
        return VersionPolicy("all")
    if choice == "latest":
        return VersionPolicy("latest", num_versions=int(proto.latest.num_versions) or 1)
    return VersionPolicy()


def parse_models_config(text: str, origin: str = "models.config") -> list[ModelEntry]:
    """The models in a `ModelServerConfig` text proto; `origin` names the source in errors."""
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"{origin}: not a ModelServerConfig text proto ({error})") from None
    return models_from_config(config, origin)


def models_from_config(
    config: model_server_config_pb2.ModelServerConfig, origin: str = "ModelServerConfig"
) -> list[ModelEntry]:
    """The models in a parsed `ModelServerConfig` (a file's, or a ReloadConfigRequest's); `origin`
    names the source in errors."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ValueError(f"{origin}: custom_model_config is not supported; use model_config_list")
    entries: list[ModelEntry] = []
    for index, model in enumerate(config.model_config_list.config):
        where = f"{origin}: config {index}"
        if not model.name or not model.base_path:
            raise ValueError(f"{where}: needs both name and base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{where}: model_platform {model.model_platform!r} is not supported")
        if any(entry.name == model.name for entry in entries):
            raise ValueError(f"{where}: model {model.name!r} is configured twice")
        try:
            policy = _policy(model.model_version_policy)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        entries.append(ModelEntry(model.name, model.base_path, policy))
    if not entries:
        raise ValueError(f"{origin}: no models configured")
    return entries


def load_models_config(path: str | Path) -> list[ModelEntry]:
    """The models in a `models.config` file."""
    return parse_models_config(Path(path).read_text(), origin=str(path))
