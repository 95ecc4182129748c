"""`tritium serve`: the OpenAI-compatible HTTP server over the continuous-batching engine."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the OpenAI-compatible HTTP API",
        description="Serve POST /v1/completions, POST /v1/chat/completions, GET /v1/models and "
                    "GET /health (and, with --grpc-port, the tritium.serving.v1 gRPC API). Settings "
                    "come from --config (a TOML file with a [serving] table, "
                    "see core/serving/serving_config.py); the flags override it.")
    parser.add_argument("--model", "-m", metavar="PATH",
                        help="GGUF file or Hugging Face folder (default: the built-in demo model)")
    parser.add_argument("--host", metavar="H", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, metavar="P", help="port to listen on (default 8000)")
    parser.add_argument("--grpc-port", type=int, metavar="P",
                        help="also serve the tritium.serving.v1 gRPC API on this port (default: off)")
    parser.add_argument("--config", metavar="FILE", help="TOML file with a [serving] table")
    parser.add_argument("--threads", "-t", type=int, metavar="N", help="compute threads (default: all)")
    parser.add_argument("--n-ctx", "-c", type=int, metavar="N", help="context window (default: the model's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tritium.core.serving.server import serve
    from tritium.core.serving.serving_config import load_serving_config

    config = load_serving_config(args.config).with_overrides(threads=args.threads, n_ctx=args.n_ctx)
    serve(args.model, args.host, args.port, config, grpc_port=args.grpc_port)
    return 0
