"""TLS for the local model server, configured as stock TF Serving's `--ssl_config_file` is.

The file is an `SSLConfig` text proto holding PEM text (not paths): `server_key`, `server_cert`, and
optionally `custom_ca` with `client_verify: true` for mutual TLS, where only clients presenting a
certificate signed by that CA are answered. The tensorflow-serving-api wheel does not ship
`ssl_config.proto`, so its message is declared here with the same field names and numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format


@dataclass(frozen=True)
class TlsConfig:
    """PEM bytes of the server's key and certificate; with `client_ca`, the CA that client certificates
    must chain to; `require_client_auth` turns on mutual TLS."""

    server_key: bytes
    server_cert: bytes
    client_ca: bytes | None = None
    require_client_auth: bool = False

    def __post_init__(self) -> None:
        if not self.server_key or not self.server_cert:
            raise ValueError("TLS needs both server_key and server_cert")
        if self.require_client_auth and not self.client_ca:
            raise ValueError("client_verify needs custom_ca, the CA that signs client certificates")

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials for these settings."""
        return grpc.ssl_server_credentials(
            [(self.server_key, self.server_cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.require_client_auth,
        )


def message_class():
    """A protobuf message with TF Serving's `SSLConfig` fields, for parsing its text format exactly."""
    file = descriptor_pb2.FileDescriptorProto(
        name="serving/ssl_config.proto", package="serving.local", syntax="proto3"
    )
    message = file.message_type.add(name="SSLConfig")
    kinds = descriptor_pb2.FieldDescriptorProto
    for number, name in enumerate(("server_key", "server_cert", "custom_ca"), start=1):
        message.field.add(name=name, number=number, label=kinds.LABEL_OPTIONAL, type=kinds.TYPE_STRING)
    message.field.add(name="client_verify", number=4, label=kinds.LABEL_OPTIONAL, type=kinds.TYPE_BOOL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    descriptor = pool.FindMessageTypeByName("serving.local.SSLConfig")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def parse_ssl_config(text: str, origin: str = "ssl_config") -> TlsConfig:
    """The settings in an `SSLConfig` text proto; errors name `origin`, never the key material."""
    try:
        proto = text_format.Parse(text, message_class()())
    except text_format.ParseError:
        raise ValueError(f"{origin}: not an SSLConfig text proto") from None
    try:
        return TlsConfig(
            proto.server_key.encode(),
            proto.server_cert.encode(),
            proto.custom_ca.encode() or None,
            proto.client_verify,
        )
    except ValueError as error:
        raise ValueError(f"{origin}: {error}") from None


def load_ssl_config(path: str | Path) -> TlsConfig:
    """The settings in an `--ssl_config_file`."""
    return parse_ssl_config(Path(path).read_text(), origin=str(path))
