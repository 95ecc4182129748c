"""`tritium serve`: the OpenAI-compatible HTTP server over the continuous-batching engine."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the OpenAI-compatible HTTP API",
        description="Serve POST /v1/completions, POST /v1/chat/completions, GET /v1/models and "
                    "GET /health, GET /metrics (and, with --grpc-port, the tritium.serving.v1 gRPC API). The "
                    "model runs in backend plugin processes, unless --in-process. Settings "
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
    parser.add_argument("--devices", type=int, metavar="N",
                        help="backend devices: N backend plugin processes (default 1)")
    parser.add_argument("--in-process", action="store_true", default=None,
                        help="run the model and the scheduling policy in this process instead of plugins")
    parser.add_argument("--scheduler", choices=("round_robin", "load_aware", "energy", "latency"),
                        help="scheduling policy (default load_aware)")
    parser.add_argument("--pin-devices", action="store_true", default=None,
                        help="pin each backend plugin process to its share of the cores")
    parser.add_argument("--admin-port", type=int, metavar="P",
                        help="serve the Admin gRPC API (list/add/replace/remove plugins) on this port")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tritium.core.serving.server import serve
    from tritium.core.serving.serving_config import load_serving_config

    config = load_serving_config(args.config).with_overrides(
        threads=args.threads, n_ctx=args.n_ctx, devices=args.devices, in_process=args.in_process,
        scheduler_type=args.scheduler, pin_devices=args.pin_devices, admin_port=args.admin_port)
    serve(args.model, args.host, args.port, config, grpc_port=args.grpc_port)
    return 0
