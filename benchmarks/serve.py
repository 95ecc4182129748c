#!/usr/bin/env python3
"""Serving throughput and latency of `tritium serve` vs llama.cpp's OpenAI-compatible server, same load.

    python benchmarks/serve.py [--model M.gguf] [--threads 2] [--concurrency 1 4 16] [--with-64]
                               [--requests-per-client 2] [--prompt-words 64] [--max-tokens 64]
                               [--engines tritium llama.cpp] [--tritium-in-process] [--json out.json]
    python benchmarks/serve.py --soak SECONDS [--kill-every 60]

Without --model, a deterministic synthetic BitNet model is written once and cached under $TRITIUM_CACHE/bench
(default ~/.cache/tritium/bench): hidden 1024, ffn 2816, 8 layers, 16 heads, vocab 32002, SiLU-gated
`bitnet` arch, TQ2_0 linears, F16 tied embedding (`tritium.core.formats.synthetic_weights`, seed 0).

Each engine runs as its own server process on 127.0.0.1, started and stopped by this script:
- tritium: `python -m tritium.core.cli serve --model F --threads T` — the model runs in the `cpu` backend
  plugin process and the placement in the `basic` scheduler plugin (the default; both signature-checked
  and sandboxed; in a source checkout with TRITIUM_ALLOW_UNSIGNED_PLUGINS=1), continuous batching
  with max_batch_size = the largest concurrency; `--tritium-in-process` adds a run of the in-process path.
- llama.cpp: `python -m llama_cpp.server --model F --n_threads T --n_threads_batch T --port P
  --interrupt_requests False` (its default cancels a running stream when a new request arrives)
  (llama-cpp-python with its `[server]` extra), n_ctx 2048. It runs one completion at a time
  (no batching across requests).

Load: at concurrency C, C clients each send `requests_per_client` streaming completions back to back
(greedy, `max_tokens` tokens, EOS disabled: tritium `ignore_eos`, llama.cpp `logit_bias` on EOS), each with
a different prompt of `prompt_words` vocabulary words. Per level: output tokens/s (all streamed tokens /
wall time of the level), TTFT p50/p99 (request sent → first token), inter-token latency p50/p99 (gaps
between successive streamed tokens of a request). Prints a table and one JSON document; ratios are
tritium / llama.cpp (throughput: higher is better for tritium; latencies: lower is better).

`--soak S`: S seconds of mixed load (1–8 concurrent clients, 8–96 tokens, streaming and not) against
tritium with the backend plugin SIGKILLed every `--kill-every` seconds (found through the Admin service);
reports requests, failures, greedy answers that differ from the first answer to the same prompt, kills,
and the RSS of the core process and of the plugin processes at the start and the end, sampled every
30 s, with the growth after `--warmup` seconds (default 90) in percent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_cache import bench_cache_dir

REPO = Path(__file__).resolve().parents[1]
SERVE_SHAPE = {
    "arch": "bitnet",
    "n_vocab": 32002,
    "n_embd": 1024,
    "n_layer": 8,
    "n_head": 16,
    "n_head_kv": 16,
    "n_ff": 2816,
    "n_ctx": 2048,
    "rope_base": 10000.0,
    "ffn_act": "silu",
    "act_quant": "q8_k",
}
EOS_ID = 2  # the SPM test vocab's </s>
STARTUP_TIMEOUT_S = 600
MODEL_IDS: dict[str, str] = {}  # server base URL -> the model id its /v1/models lists


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------
def build_model(cache_dir: Path, seed: int = 0) -> Path:
    """The cached hidden-1024 / ffn-2816 / 8-layer TQ2_0 model (written on first use, atomically)."""
    from tritium.core.formats.gguf_writer import spm_test_vocab, write_bitnet_gguf
    from tritium.core.formats.synthetic_weights import SyntheticBitNetWeights
    from tritium.core.model.config import ModelConfig

    path = cache_dir / f"bitnet-serve-1024x8-tq2_0-seed{seed}.gguf"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    config = ModelConfig(**SERVE_SHAPE)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    t0 = time.perf_counter()
    write_bitnet_gguf(
        tmp,
        config,
        SyntheticBitNetWeights(config, seed),
        linear_type="TQ2_0",
        embd_type="F16",
        tokenizer=spm_test_vocab(config.n_vocab),
        name="bitnet-serve-bench",
    )
    tmp.rename(path)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    return path


def prompt_text(i: int, words: int) -> str:
    """A prompt of `words` vocabulary words (`w<k>` pieces of the SPM test vocab), different per i."""
    rng = random.Random(i)
    return " ".join(f"w{rng.randrange(1, 20000)}" for _ in range(words))


# ------------------------------------------------------------------------------------------------
# servers
# ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process (its own process group) and its base URL."""

    def __init__(self, name: str, argv: list[str], port: int, log_dir: Path, env: dict | None = None) -> None:
        self.name = name
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_dir / f"{name.replace(' ', '_')}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self, path: str) -> float:
        import httpx

        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.base + path, timeout=2).status_code == 200:
                    models = httpx.get(self.base + "/v1/models", timeout=10).json()["data"]
                    MODEL_IDS[self.base] = models[0]["id"]
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > STARTUP_TIMEOUT_S:
                self.stop()
                raise RuntimeError(f"{self.name} not ready within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def start_tritium(
    model: Path,
    threads: int,
    max_batch: int,
    log_dir: Path,
    *,
    in_process: bool = False,
    admin_port: int | None = None,
    decode_steps: int | None = None,
) -> Server:
    port = free_port()
    config = log_dir / f"tritium{'-inproc' if in_process else ''}.toml"
    config.write_text(
        f"[serving]\nmax_batch_size = {max_batch}\nmax_queue = 256\nprefill_chunk = 64\n"
        f"max_batch_tokens = {max(256, max_batch * 2)}\nn_ctx = 2048\nmax_tokens_limit = 4096\n"
        + (f"decode_steps = {decode_steps}\n" if decode_steps else "")
    )
    argv = [
        sys.executable,
        "-m",
        "tritium.core.cli",
        "serve",
        "--model",
        str(model),
        "--port",
        str(port),
        "--threads",
        str(threads),
        "--config",
        str(config),
    ]
    if in_process:
        argv.append("--in-process")
    if admin_port is not None:
        argv += ["--admin-port", str(admin_port)]
    # The builtin plugins of a source checkout carry no release signature: the development switch lets
    # the signature check pass them (they still run sandboxed). A signed install needs none of this.
    env = {
        **os.environ,
        "TRITIUM_ALLOW_UNSIGNED_PLUGINS": os.environ.get("TRITIUM_ALLOW_UNSIGNED_PLUGINS", "1"),
    }
    return Server("tritium (in-process)" if in_process else "tritium", argv, port, log_dir, env=env)


def start_llamacpp(model: Path, threads: int, log_dir: Path) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--n_ctx",
        "2048",
        "--interrupt_requests",
        "False",
    ]
    return Server("llama.cpp", argv, port, log_dir)


# ------------------------------------------------------------------------------------------------
# load
# ------------------------------------------------------------------------------------------------
async def stream_one(
    client,
    base: str,
    engine: str,
    prompt: str,
    max_tokens: int,  # noqa: ANN001
    stream: bool = True,
) -> dict:
    """One completion; returns its token arrival times (streaming) or text, and errors."""
    body = {
        "model": MODEL_IDS.get(base, "m"),
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    if engine.startswith("tritium"):
        body["ignore_eos"] = True
    else:
        body["logit_bias"] = {str(EOS_ID): -100}
    t0 = time.perf_counter()
    times: list[float] = []
    text: list[str] = []
    try:
        if not stream:
            r = await client.post(f"{base}/v1/completions", json=body)
            r.raise_for_status()
            out = r.json()
            return {
                "t0": t0,
                "times": [time.perf_counter()],
                "text": out["choices"][0]["text"],
                "error": None,
                "tokens": out["usage"]["completion_tokens"],
            }
        async with client.stream("POST", f"{base}/v1/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices"):
                    choice = chunk["choices"][0]
                    if not choice.get("text") and choice.get("finish_reason"):
                        continue  # a closing chunk that carries no token (llama-cpp-python sends one)
                    times.append(time.perf_counter())
                    text.append(choice.get("text") or "")
    except Exception as e:  # noqa: BLE001 (report, don't stop the load)
        return {
            "t0": t0,
            "times": times,
            "text": "".join(text),
            "error": f"{type(e).__name__}: {e}",
            "tokens": len(times),
        }
    return {"t0": t0, "times": times, "text": "".join(text), "error": None, "tokens": len(times)}


async def run_level(
    base: str, engine: str, concurrency: int, per_client: int, words: int, max_tokens: int
) -> dict:
    import httpx

    results: list[dict] = []
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(1800.0), limits=limits) as client:

        async def worker(w: int) -> None:
            for k in range(per_client):
                results.append(
                    await stream_one(
                        client, base, engine, prompt_text(1000 * concurrency + w * 97 + k, words), max_tokens
                    )
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["error"] is None]
    ttft = [r["times"][0] - r["t0"] for r in ok if r["times"]]
    itl = [b - a for r in ok for a, b in zip(r["times"], r["times"][1:], strict=False)]
    tokens = sum(r["tokens"] for r in results)

    def q(values: list[float], p: float) -> float:
        return float(np.quantile(values, p)) * 1e3 if values else float("nan")

    return {
        "concurrency": concurrency,
        "requests": len(results),
        "failed": len(results) - len(ok),
        "output_tokens": tokens,
        "wall_s": round(wall, 3),
        "output_tok_s": round(tokens / wall, 2),
        "ttft_p50_ms": round(q(ttft, 0.5), 1),
        "ttft_p99_ms": round(q(ttft, 0.99), 1),
        "itl_p50_ms": round(q(itl, 0.5), 2),
        "itl_p99_ms": round(q(itl, 0.99), 2),
        "errors": sorted({r["error"] for r in results if r["error"]})[:3],
    }


def prompt_tokens(server: Server, words: int) -> int | None:
    """How many tokens the server counts in one benchmark prompt (its tokenizer; BOS included)."""
    import httpx

    body = {"model": MODEL_IDS.get(server.base, "m"), "prompt": prompt_text(0, words), "max_tokens": 1}
    try:
        return int(
            httpx.post(f"{server.base}/v1/completions", json=body, timeout=600).json()["usage"][
                "prompt_tokens"
            ]
        )
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def bench_engine(server: Server, ready_path: str, levels: list[int], args: argparse.Namespace) -> dict:
    startup = server.wait_ready(ready_path)
    # Warm-up: one short request (compiles nothing for tritium — kernels come from numba's cache —
    # but pages the weights in for both).
    asyncio.run(run_level(server.base, server.name, 1, 1, 8, 4))
    out = {
        "engine": server.name,
        "startup_s": round(startup, 2),
        "prompt_tokens_example": prompt_tokens(server, args.prompt_words),
        "levels": [],
    }
    for c in levels:
        r = asyncio.run(
            run_level(
                server.base, server.name, c, args.requests_per_client, args.prompt_words, args.max_tokens
            )
        )
        print(
            f"  {server.name:22s} c={c:<3d} {r['output_tok_s']:8.1f} tok/s  "
            f"TTFT p50 {r['ttft_p50_ms']:8.1f} ms"
            f"  ITL p50 {r['itl_p50_ms']:7.2f} ms  failed {r['failed']}",
            file=sys.stderr,
            flush=True,
        )
        out["levels"].append(r)
    return out


# ------------------------------------------------------------------------------------------------
# soak
# ------------------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def plugin_pids(admin_port: int) -> dict[str, int]:
    import grpc
    from tritium.protos.tritium.serving.v1 import serving_pb2 as pb
    from tritium.protos.tritium.serving.v1 import serving_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{admin_port}") as ch:
        rows = serving_pb2_grpc.AdminStub(ch).ListPlugins(pb.ListPluginsRequest(), timeout=10).plugins
        return {p.name: int(p.pid) for p in rows}


def soak(model: Path, args: argparse.Namespace, log_dir: Path) -> dict:
    import httpx

    admin_port = free_port()
    server = start_tritium(model, args.threads, 8, log_dir, admin_port=admin_port)
    server.wait_ready("/health")
    pids = plugin_pids(admin_port)
    backend = next(n for n in pids if n.startswith(args.backend_name))
    start = {
        "core_rss_mb": rss_mb(server.proc.pid),
        "plugins_rss_mb": {n: rss_mb(p) for n, p in pids.items()},
    }
    samples: list[dict] = []
    warm_box: list[dict] = []  # the first sample at or after --warmup
    first_answer: dict[tuple[int, int], str] = {}
    stats = {"requests": 0, "failed": 0, "mismatched": 0, "kills": 0, "tokens": 0, "errors": []}
    end_at = time.monotonic() + args.soak

    async def load() -> None:
        rng = random.Random(0)
        async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as client:

            async def worker(w: int) -> None:
                while time.monotonic() < end_at:
                    prompt_id, max_tokens = rng.randrange(12), rng.choice([8, 24, 48, 96])
                    stream = rng.random() < 0.7
                    r = await stream_one(
                        client,
                        server.base,
                        "tritium",
                        prompt_text(prompt_id, 16 + 8 * prompt_id),
                        max_tokens,
                        stream=stream,
                    )
                    stats["requests"] += 1
                    stats["tokens"] += r["tokens"]
                    if r["error"] is not None:
                        stats["failed"] += 1
                        stats["errors"] = (stats["errors"] + [r["error"]])[:5]
                        continue
                    key = (prompt_id, max_tokens)
                    if first_answer.setdefault(key, r["text"]) != r["text"]:
                        stats["mismatched"] += 1
                    await asyncio.sleep(rng.random() * 0.2)

            async def killer() -> None:
                next_kill = time.monotonic() + args.kill_every
                while time.monotonic() < end_at:
                    await asyncio.sleep(0.5)
                    if time.monotonic() >= next_kill:
                        pid = (await asyncio.to_thread(plugin_pids, admin_port))[backend]
                        os.kill(pid, signal.SIGKILL)
                        stats["kills"] += 1
                        at = args.soak - (end_at - time.monotonic())
                        print(
                            f"  soak: SIGKILL backend pid {pid} at {at:.0f} s",
                            file=sys.stderr,
                            flush=True,
                        )
                        next_kill += args.kill_every

            async def sampler() -> None:
                # RSS of the core and of the whole tree every 30 s; the one at --warmup is the baseline
                # the growth is measured from (caches, numba's compiled kernels and the KV pages of
                # the first long requests are in place by then).
                t0 = time.monotonic()
                while time.monotonic() < end_at:
                    await asyncio.sleep(min(30.0, max(end_at - time.monotonic(), 0.0)))
                    snap = await asyncio.to_thread(rss_snapshot, server.proc.pid, admin_port)
                    snap["at_s"] = round(time.monotonic() - t0)
                    samples.append(snap)
                    if not warm_box and time.monotonic() - t0 >= args.warmup:
                        warm_box.append(snap)

            # 8 clients that pause at random between requests: 1 to 8 of them in flight at a time.
            await asyncio.gather(killer(), sampler(), *(worker(w) for w in range(8)))

    try:
        asyncio.run(load())
        time.sleep(1.0)
        pids = plugin_pids(admin_port)
        end = {
            "core_rss_mb": rss_mb(server.proc.pid),
            "plugins_rss_mb": {n: rss_mb(p) for n, p in pids.items()},
        }
        restarts = httpx.get(server.base + "/metrics", timeout=10).text
        restarts_line = [
            ln for ln in restarts.splitlines() if ln.startswith("tritium_plugin_restarts_total{")
        ]
    finally:
        server.stop()
    warm = warm_box[0] if warm_box else samples[0] if samples else None
    last = samples[-1] if samples else None
    return {
        "soak_s": args.soak,
        "kill_every_s": args.kill_every,
        **stats,
        "rss_start": start,
        "rss_end": end,
        "core_rss_growth_mb": round(end["core_rss_mb"] - start["core_rss_mb"], 1),
        "rss_samples": samples,
        "warmup_s": args.warmup,
        "rss_after_warmup": warm,
        "core_rss_growth_after_warmup_pct": growth_pct(warm, last, "core_rss_mb"),
        "tree_rss_growth_after_warmup_pct": growth_pct(warm, last, "tree_rss_mb"),
        "restarts_metrics": restarts_line,
    }


def rss_snapshot(core_pid: int, admin_port: int) -> dict:
    """RSS (MB) of the core process and of the core plus its plugin processes."""
    core = rss_mb(core_pid)
    plugins = sum(rss_mb(p) for p in plugin_pids(admin_port).values())
    return {"core_rss_mb": round(core, 1), "tree_rss_mb": round(core + plugins, 1)}


def growth_pct(before: dict | None, after: dict | None, key: str) -> float | None:
    if not before or not after or not before[key]:
        return None
    return round(100.0 * (after[key] - before[key]) / before[key], 1)


# ------------------------------------------------------------------------------------------------
def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b and a == a and b == b else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model", type=Path, help="GGUF model (default: the cached synthetic 1024x8 TQ2_0 model)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--with-64", action="store_true", help="add concurrency 64")
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--prompt-words", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument(
        "--engines", nargs="+", default=["tritium", "llama.cpp"], choices=["tritium", "llama.cpp"]
    )
    ap.add_argument("--tritium-in-process", action="store_true", help="also measure `serve --in-process`")
    ap.add_argument("--json", type=Path, help="also write the JSON document here")
    ap.add_argument("--soak", type=float, metavar="SECONDS", help="soak mode (see the module docstring)")
    ap.add_argument("--kill-every", type=float, default=60.0)
    ap.add_argument(
        "--warmup", type=float, default=90.0, help="soak: seconds before the RSS baseline is taken"
    )
    ap.add_argument("--backend-name", default="cpu")
    ap.add_argument(
        "--decode-steps",
        type=int,
        help="the server's decode_steps (greedy decode steps per backend call; default: the server's, 4)",
    )
    args = ap.parse_args(argv)

    model = args.model or build_model(bench_cache_dir())
    log_dir = Path(tempfile.mkdtemp(prefix="tritium-serve-bench-"))
    if args.soak:
        doc = {
            "benchmark": "serve-soak",
            "model": str(model),
            "threads": args.threads,
            **soak(model, args, log_dir),
        }
        print(json.dumps(doc, indent=1))
        if args.json:
            args.json.write_text(json.dumps(doc, indent=1))
        return 0 if doc["failed"] == 0 and doc["mismatched"] == 0 else 1

    levels = sorted(set(args.concurrency + ([64] if args.with_64 else [])))
    runs = []
    plan = []
    if "tritium" in args.engines:
        plan.append(
            lambda: (
                start_tritium(model, args.threads, max(levels), log_dir, decode_steps=args.decode_steps),
                "/health",
            )
        )
        if args.tritium_in_process:
            plan.append(
                lambda: (start_tritium(model, args.threads, max(levels), log_dir, in_process=True), "/health")
            )
    if "llama.cpp" in args.engines:
        plan.append(lambda: (start_llamacpp(model, args.threads, log_dir), "/v1/models"))
    for make in plan:
        server, ready = make()
        print(f"{server.name}: starting (log {server.log_path})", file=sys.stderr, flush=True)
        try:
            runs.append(bench_engine(server, ready, levels, args))
        except RuntimeError as e:
            runs.append({"engine": server.name, "error": str(e)})
            print(f"{server.name}: {e}", file=sys.stderr)
        finally:
            server.stop()

    by = {r["engine"]: {lv["concurrency"]: lv for lv in r.get("levels", [])} for r in runs}
    ratios = []
    if "tritium" in by and "llama.cpp" in by:
        for c in levels:
            t, ll = by["tritium"].get(c), by["llama.cpp"].get(c)
            if t and ll:
                ratios.append(
                    {
                        "concurrency": c,
                        "output_tok_s": ratio(t["output_tok_s"], ll["output_tok_s"]),
                        "ttft_p50": ratio(t["ttft_p50_ms"], ll["ttft_p50_ms"]),
                        "ttft_p99": ratio(t["ttft_p99_ms"], ll["ttft_p99_ms"]),
                        "itl_p50": ratio(t["itl_p50_ms"], ll["itl_p50_ms"]),
                        "itl_p99": ratio(t["itl_p99_ms"], ll["itl_p99_ms"]),
                    }
                )
    doc = {
        "benchmark": "serve",
        "model": str(model),
        "shape": None if args.model else SERVE_SHAPE,
        "threads": args.threads,
        "requests_per_client": args.requests_per_client,
        "prompt_words": args.prompt_words,
        "max_tokens": args.max_tokens,
        "machine_cpus": os.cpu_count(),
        "runs": runs,
        "ratios_tritium_over_llamacpp": ratios,
    }

    head = (
        f"{'engine':22s} {'conc':>4s} {'reqs':>4s} {'fail':>4s} {'out tok/s':>9s} {'TTFT p50':>9s} "
        f"{'TTFT p99':>9s} {'ITL p50':>8s} {'ITL p99':>8s}   (ms)"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        if "error" in r:
            print(f"{r['engine']:22s} error: {r['error'][:80]}")
        for lv in r.get("levels", []):
            print(
                f"{r['engine']:22s} {lv['concurrency']:4d} {lv['requests']:4d} {lv['failed']:4d} "
                f"{lv['output_tok_s']:9.1f} {lv['ttft_p50_ms']:9.1f} {lv['ttft_p99_ms']:9.1f} "
                f"{lv['itl_p50_ms']:8.2f} {lv['itl_p99_ms']:8.2f}"
            )
    for rt in ratios:
        print(
            f"ratio tritium/llama.cpp c={rt['concurrency']}: tok/s x{rt['output_tok_s']}, "
            f"TTFT p50 x{rt['ttft_p50']}, ITL p50 x{rt['itl_p50']}"
        )
    print(json.dumps(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
