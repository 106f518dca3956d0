"""The public surface of ``corolla.transport`` is exactly the intended names."""

from __future__ import annotations

import corolla.transport as transport


def test_exports() -> None:
    assert sorted(transport.__all__) == sorted(
        [
            "AUTHORIZATION_KEY",
            "DEFAULT_CHUNK_SIZE",
            "DEFAULT_MAX_MESSAGE_BYTES",
            "DEFAULT_MAX_PAYLOAD_SIZE",
            "ERROR_CODE_KEY",
            "INLINE_ARRAY_BYTES",
            "Address",
            "ArrayResolver",
            "CertificateFiles",
            "ChunkAssembler",
            "ChunkView",
            "EncodeCache",
            "EncodedArray",
            "FileSink",
            "MemorySink",
            "Sink",
            "TransportError",
            "abort",
            "accounts_pb2",
            "accounts_pb2_grpc",
            "array_entries",
            "bearer_metadata",
            "bearer_token",
            "channel_credentials",
            "channel_options",
            "check_array_entry",
            "check_sha256",
            "chunk_frame",
            "chunk_frames",
            "chunk_messages",
            "control_pb2",
            "control_pb2_grpc",
            "embed_arrays",
            "error_from_code",
            "error_from_rpc",
            "event_from_proto",
            "event_to_proto",
            "fleet_pb2",
            "fleet_pb2_grpc",
            "generate_certificates",
            "inline_array",
            "inline_size",
            "iter_chunks",
            "iter_rpc",
            "length_delimited",
            "message_from_proto",
            "message_pb2",
            "message_to_proto",
            "metadata_from_proto",
            "metadata_to_proto",
            "parse_address",
            "parse_chunk",
            "read_chunks",
            "record_dict_from_proto",
            "record_dict_to_proto",
            "records_pb2",
            "requires_tls",
            "run_pb2",
            "server_credentials",
            "server_options",
            "serialized_message",
            "serverappio_pb2",
            "serverappio_pb2_grpc",
            "sha256_of",
            "signed_reply_body",
            "status_for",
            "transfer_pb2",
            "translate_rpc_errors",
            "user_config_from_proto",
            "user_config_to_proto",
        ]
    )
    for name in transport.__all__:
        assert hasattr(transport, name)


def test_transport_imports_only_core_of_corolla() -> None:
    # The repository-wide layer test checks the same once transport is registered there;
    # this keeps the rule visible next to the package.
    import ast
    from pathlib import Path

    root = Path(transport.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                if parts[0] == "corolla":
                    assert parts[1] in {"core", "transport"}, f"{path.name}: {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == "corolla":
                        assert parts[1:2] in (["core"], ["transport"]), f"{path.name}: {alias.name}"
