"""`serve()`: load a model, start the continuous-batching engine and serve the OpenAI API with uvicorn.

This is what `tritium serve` runs. By default the core runs no model kernel itself: each of the
`devices` devices is a backend plugin process (`backend_plugin`, the builtin `cpu`) that memory-maps
the model and keeps the KV cache, and each step's batch and placement come from the scheduler plugin
process (`scheduler_plugin`, the builtin `basic`) — see plugin_stack.py. The core still loads the model
file for its tokenizer and config (memory-mapped: the weights pages it never touches cost nothing).
With `in_process`, one `Runtime` per device runs in this process and the in-core policy schedules.
`admin_port` serves the operator's Admin gRPC service (list / add / replace / remove plugins while
serving); `GET /metrics` serves Prometheus metrics of the engine and of every plugin.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tritium.core.serving.engine_loop import ServingEngine
from tritium.core.serving.serving_config import ServingConfig, load_serving_config


def build_engine(model_path: str | Path | None, config: ServingConfig) -> tuple[ServingEngine, str]:
    """Load the model (the built-in demo model when `model_path` is None), build its runtimes in this
    process, warm the kernels up, and return the engine (not started) with the model id the API will
    list. This is the `in_process` path; `build_plugin_engine` is the default one."""
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


def build_plugin_engine(model_path: str | Path | None, config: ServingConfig,
                        **stack_options: Any) -> tuple[ServingEngine, str, Any]:
    """Start the backend plugin processes (one per device, model loaded and kernels warm in each) and
    the scheduler plugin, and return the engine over them (not started), the model id, and the
    PluginStack (close it after the engine stops)."""
    from tritium.core.model.demo import demo_model_path
    from tritium.core.model.loader import load_model
    from tritium.core.serving.plugin_stack import PluginStack

    path = Path(model_path) if model_path else demo_model_path()
    model = load_model(path)  # tokenizer and config; the weights stay unread pages of the mmap here
    stack = PluginStack(config, path, **stack_options)
    runtimes, policy = stack.start()
    try:
        engine = ServingEngine(model, runtimes, config, policy=policy)
    except BaseException:
        stack.close()
        raise
    stack.attach(engine)
    model_id = config.model_id or path.name.removesuffix(".gguf")
    return engine, model_id, stack


def start_admin_server(admin: Any, host: str, port: int) -> tuple[Any, int]:
    """Serve tritium.serving.v1.Admin over `admin` (a Supervisor or a PluginStack) on host:port."""
    from concurrent import futures

    import grpc
    from tritium.plugin_host.admin import AdminService
    from tritium.protos.tritium.serving.v1 import serving_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="tritium-admin"))
    serving_pb2_grpc.add_AdminServicer_to_server(AdminService(admin), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"Admin gRPC: cannot listen on {host}:{port}")
    server.start()
    return server, bound


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
    from tritium.core.serving.serving_metrics import metrics_registry

    stack = None
    if cfg.in_process:
        engine, model_id = build_engine(model_path, cfg)
        where = "in this process"
    else:
        engine, model_id, stack = build_plugin_engine(model_path, cfg)
        pids = ", ".join(f"{r['name']} pid {r['pid']}" for r in stack.status())
        where = f"in plugin processes ({pids}); scheduler_type {cfg.scheduler_type}"
    servers = []
    try:
        c = engine.model.config
        log(f"loaded {model_id} ({c.arch}, {c.n_layer} layers, vocab {c.n_vocab}, context {engine.n_ctx}) "
            f"in {time.perf_counter() - t0:.2f} s; {cfg.devices} device(s) {where}; "
            f"batch <= {cfg.max_batch_size}, queue <= {cfg.max_queue}")
        app = create_app(engine, model_id=model_id, config=cfg, log=log,
                         metrics=metrics_registry(engine, stack))
        if cfg.grpc_port is not None:
            from tritium.core.serving.grpc_api import start_grpc_server

            grpc_server, bound = start_grpc_server(engine, model_id, cfg.host, cfg.grpc_port)
            servers.append(grpc_server)
            log(f"serving the gRPC API tritium.serving.v1 on {cfg.host}:{bound}")
        if cfg.admin_port is not None:
            if stack is None:
                log("no Admin service: the model runs in process (no plugins to administer)")
            else:
                admin_server, bound = start_admin_server(stack, cfg.host, cfg.admin_port)
                servers.append(admin_server)
                log(f"serving the Admin gRPC API tritium.serving.v1.Admin on {cfg.host}:{bound}")
        log(f"serving the OpenAI API on http://{cfg.host}:{cfg.port}/v1 (model id {model_id!r}); "
            f"metrics on /metrics")
        uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                                      access_log=False)).run()
    finally:
        for server in servers:
            server.stop(grace=2)
        engine.stop()
        if stack is not None:
            stack.close()
