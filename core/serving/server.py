"""`serve()`: load a model, start the continuous-batching engine and serve the OpenAI API with uvicorn.

This is what `tritium serve` runs. One `Runtime` per configured device (`devices` in the config), all
over the same memory-mapped weights; the engine's policy places each request on one of them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.serving_config import ServingConfig, load_serving_config


def build_engine(model_path: str | Path | None, config: ServingConfig) -> tuple[ServingEngine, str]:
    """Load the model (the built-in demo model when `model_path` is None), build its runtimes, warm
    the kernels up, and return the engine (not started) with the model id the API will list."""
    from tritium.core.compute import Runtime
    from tritium.core.model.demo import demo_model_path
    from tritium.core.model.loader import load_model

    path = Path(model_path) if model_path else demo_model_path()
    model = load_model(path)
    runtimes = [Runtime(model.config, model.weights, threads=config.threads, kv_dtype=config.kv_dtype,
                        n_ctx=config.n_ctx) for _ in range(config.devices)]
    # Compile (or load from numba's cache) every kernel now, not in the first client's request.
    warm_token = model.tokenizer.bos_id if model.tokenizer.bos_id is not None else 0
    for rt in runtimes:
        rt.step([(rt.new_sequence(), [warm_token, warm_token])])
        rt.step([(rt.new_sequence(), [warm_token])])
    model_id = config.model_id or path.name.removesuffix(".gguf")
    return ServingEngine(model, runtimes, config), model_id


def serve(model_path: str | Path | None = None, host: str | None = None, port: int | None = None,
          config: ServingConfig | str | Path | None = None, *, grpc_port: int | None = None,
          log: Any = None) -> None:
    """Serve until interrupted. Ctrl-C / SIGTERM stop the listener, then the engine; uvicorn then
    re-raises the signal, so the process ends the way that signal ends it (KeyboardInterrupt, or -15).

    `config` is a ServingConfig, a TOML file path, or None for the defaults; `host` and `port` override
    it, and `grpc_port` also serves the gRPC API. Errors loading the model or the config are raised
    before anything listens.
    """
    import uvicorn
    from tritium.core.serving.openai_api import create_app

    cfg = config if isinstance(config, ServingConfig) else load_serving_config(config)
    cfg = cfg.with_overrides(host=host, port=port, grpc_port=grpc_port)
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    engine, model_id = build_engine(model_path, cfg)
    c = engine.model.config
    log(f"loaded {model_id} ({c.arch}, {c.n_layer} layers, vocab {c.n_vocab}, context {engine.n_ctx}) "
        f"in {time.perf_counter() - t0:.2f} s; {cfg.devices} device(s), batch <= {cfg.max_batch_size}, "
        f"queue <= {cfg.max_queue}")
    app = create_app(engine, model_id=model_id, config=cfg, log=log)
    grpc_server = None
    if cfg.grpc_port is not None:
        from tritium.core.serving.grpc_api import start_grpc_server

        grpc_server, bound = start_grpc_server(engine, model_id, cfg.host, cfg.grpc_port)
        log(f"serving the gRPC API tritium.serving.v1 on {cfg.host}:{bound}")
    log(f"serving the OpenAI API on http://{cfg.host}:{cfg.port}/v1 (model id {model_id!r})")
    try:
        uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                                      access_log=False)).run()
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=2)
