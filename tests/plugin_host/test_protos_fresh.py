"""The committed generated code equals a fresh generation from the .proto files."""

from __future__ import annotations

from importlib import metadata

import pytest
from tritium.protos import generate

pytestmark = pytest.mark.skipif(
    metadata.version("grpcio-tools") != generate.GRPCIO_TOOLS_VERSION,
    reason=f"generated code is pinned to grpcio-tools=={generate.GRPCIO_TOOLS_VERSION}",
)


def test_committed_generated_code_is_fresh(tmp_path):
    fresh = generate.generate(tmp_path)
    committed = generate.generated_files(generate.PROTO_ROOT)
    assert fresh, "the generator produced nothing"
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), (
        "generated file set differs; run `python -m tritium.protos.generate`"
    )
    stale = [
        str(rel) for rel in fresh if (tmp_path / rel).read_bytes() != (generate.PROTO_ROOT / rel).read_bytes()
    ]
    assert not stale, f"stale generated files {stale}; run `python -m tritium.protos.generate`"


def test_generated_imports_resolve():
    from tritium.protos.tritium.plugin.v1 import (  # noqa: F401
        backend_pb2_grpc,
        common_pb2_grpc,
        quantizer_pb2_grpc,
        scheduler_pb2_grpc,
    )
    from tritium.protos.tritium.serving.v1 import serving_pb2_grpc  # noqa: F401


def test_config_defaults_are_presence_tracked():
    # Seed defaults rely on proto3 `optional`: an unset field must be distinguishable from 0/false.
    from tritium.protos.tritium.plugin.v1 import common_pb2

    cfg = common_pb2.BackendConfig()
    assert not cfg.HasField("tensor_cores")
    cfg.tensor_cores = False
    assert cfg.HasField("tensor_cores")
