"""Generated protobuf/gRPC code for the tritium.plugin.v1 and tritium.serving.v1 contracts."""
