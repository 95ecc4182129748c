"""Plugin launcher: discovery, manifest, signature, sandbox, launch, handshake, supervision."""

import os

# gRPC's C core logs every GOAWAY of a plugin that shuts down at INFO level on stderr; the host logs
# plugin lifecycle itself, so keep gRPC to errors unless the operator asked otherwise.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
