#!/usr/bin/env python3
"""Decode and prefill speed of Tritium vs llama.cpp on a bitnet_b1_58-large-shape TQ2_0 model.

    python benchmarks/decode.py [--model M.gguf] [--threads 1 2] [--prompt-tokens 128] [--decode-tokens 128]
                                [--json out.json] [--engines tritium llama.cpp]

Without --model, a deterministic random model with the shape of bitnet_b1_58-large (hidden 1536,
24 layers, 16 heads, ffn 4096, vocab 32002, SiLU-gated `bitnet` arch, F16 tied embedding, TQ2_0
linears; seed 0) is written once and cached under $TRITIUM_CACHE/bench (default ~/.cache/tritium/bench).

Each (engine, threads) measurement runs in a fresh child process, so peak RSS is per engine and no
cache is shared. The method is the same for both engines (see benchmarks/llamacpp_peer.py): a
4-token warm-up (also compiles/loads Tritium's cached numba kernels) then a prompt of BOS + seeded
random ids evaluated in ONE call (prefill tok/s), then `decode_tokens` greedy tokens one call each
(decode tok/s). Tritium runs with its fp16 emulation (kv_dtype "f16", as llama.cpp's default F16 KV).
Prints a table and one JSON document (ratios = Tritium / llama.cpp).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from bench_cache import bench_cache_dir

REPO = Path(__file__).resolve().parents[1]
LARGE = {"arch": "bitnet", "n_vocab": 32002, "n_embd": 1536, "n_layer": 24, "n_head": 16, "n_head_kv": 16,
         "n_ff": 4096, "n_ctx": 2048, "rope_base": 10000.0, "ffn_act": "silu", "act_quant": "q8_k"}


# ------------------------------------------------------------------------------------------------
# the benchmark model
# ------------------------------------------------------------------------------------------------
class _LazyWeights(Mapping):
    """GGUF tensor name -> array / TernaryMatrix, generated on access (one tensor in memory at a time)."""

    def __init__(self, config, seed: int) -> None:  # noqa: ANN001
        from tritium.core.formats.bitnet_tensors import bitnet_shapes, bitnet_tensor_names

        self.shapes = bitnet_shapes(config)
        self.names = bitnet_tensor_names(config.n_layer)
        self.seed = seed

    def __getitem__(self, name: str):  # noqa: ANN204
        from tritium.core.formats.ggml_encode import TernaryMatrix

        if name not in self.names:
            raise KeyError(name)
        rng = np.random.default_rng([self.seed, self.names.index(name)])
        shape = self.shapes[name]
        if name == "token_embd.weight":
            return (rng.standard_normal(shape, dtype=np.float32) * 0.05).astype(np.float16)
        if len(shape) == 1:
            return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        values = rng.integers(-1, 2, shape, dtype=np.int8)
        return TernaryMatrix(values, float(np.float16(0.6 / np.sqrt(shape[1]))))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def build_model(cache_dir: Path, seed: int = 0) -> Path:
    """The cached large-shape TQ2_0 model (written on first use, atomically)."""
    from tritium.core.formats.gguf_writer import spm_test_vocab, write_bitnet_gguf
    from tritium.core.model.config import ModelConfig

    path = cache_dir / f"bitnet-large-shape-tq2_0-seed{seed}.gguf"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    config = ModelConfig(**LARGE)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    t0 = time.perf_counter()
    write_bitnet_gguf(tmp, config, _LazyWeights(config, seed), linear_type="TQ2_0", embd_type="F16",
                      tokenizer=spm_test_vocab(config.n_vocab), name="bitnet-large-shape")
    tmp.rename(path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    return path


# ------------------------------------------------------------------------------------------------
# Tritium measurement (child process)
# ------------------------------------------------------------------------------------------------
def _measure_tritium(model_path: str, threads: int, prompt_tokens: int, decode_tokens: int) -> dict:
    import resource

    from tritium.core.compute import Runtime
    from tritium.core.model.loader import load_model

    t0 = time.perf_counter()
    model = load_model(model_path)
    rt = Runtime(model.config, model.weights, threads=threads, kv_dtype="f16",
                 n_ctx=prompt_tokens + decode_tokens + 8)
    load_s = time.perf_counter() - t0
    n_vocab = model.config.n_vocab
    bos = model.config.bos_token_id
    rng = np.random.default_rng(0)  # the same prompt as benchmarks/llamacpp_peer.py
    lo = min(1000, n_vocab // 2)
    prompt = [bos] if bos is not None and bos >= 0 else []
    prompt += rng.integers(lo, n_vocab, prompt_tokens).tolist()
    prompt = prompt[:prompt_tokens]

    warm = rt.new_sequence()  # warm-up: numba kernels (from cache), page in the weights
    rt.eval(warm, prompt[:4])
    rt.eval(warm, prompt[4:5])
    del warm

    seq = rt.new_sequence()
    t0 = time.perf_counter()
    logits = rt.eval(seq, prompt)
    prefill_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    tok = int(np.argmax(logits[-1]))
    for _ in range(decode_tokens):
        logits = rt.eval(seq, [tok])
        tok = int(np.argmax(logits[-1]))
    decode_s = time.perf_counter() - t0
    return {
        "engine": "tritium", "available": True, "model": model_path, "threads": threads,
        "prefill_tokens": len(prompt), "prefill_tok_s": len(prompt) / prefill_s,
        "decode_tokens": decode_tokens, "decode_tok_s": decode_tokens / decode_s,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "load_s": round(load_s, 3), "settings": {"kv_dtype": "f16", "act_quant": model.config.act_quant},
    }


def _child(engine: str, model: Path, threads: int, args: argparse.Namespace) -> dict:
    if engine == "llama.cpp":
        spec = importlib.util.spec_from_file_location("llamacpp_peer",
                                                      REPO / "benchmarks" / "llamacpp_peer.py")
        peer = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(peer)
        res = peer.measure_llamacpp(model, threads, args.prompt_tokens, args.decode_tokens)
        res["engine"] = "llama.cpp"
        return res
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(model), "--threads", str(threads),
           "--prompt-tokens", str(args.prompt_tokens), "--decode-tokens", str(args.decode_tokens)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"tritium worker failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path,
                    help="a TQ2_0 (or any supported) GGUF; default: the cached large-shape model")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--engines", nargs="+", default=["tritium", "llama.cpp"],
                    choices=["tritium", "llama.cpp"])
    ap.add_argument("--cache-dir", type=Path, default=bench_cache_dir())
    ap.add_argument("--json", type=Path, help="also write the JSON document here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        res = _measure_tritium(args.worker, args.threads[0], args.prompt_tokens, args.decode_tokens)
        print(json.dumps(res))
        return

    model = args.model or build_model(args.cache_dir)
    results: list[dict] = []
    for threads in args.threads:
        for engine in args.engines:
            try:
                res = _child(engine, model, threads, args)
            except (RuntimeError, subprocess.SubprocessError) as exc:
                res = {"engine": engine, "available": False, "threads": threads, "reason": str(exc)[-500:]}
            if engine == "llama.cpp" and not res.get("available", False):
                print(f"peer unavailable: {res.get('reason', '')}", file=sys.stderr)
            res["threads"] = threads
            results.append(res)

    ratios = {}
    for threads in args.threads:
        by = {r["engine"]: r for r in results if r["threads"] == threads and r.get("available")}
        if "tritium" in by and "llama.cpp" in by:
            ratios[str(threads)] = {k: round(by["tritium"][k] / by["llama.cpp"][k], 3)
                                    for k in ("prefill_tok_s", "decode_tok_s", "peak_rss_mb")}

    print(f"\nmodel: {model} ({model.stat().st_size / 2**20:.1f} MiB)")
    print(f"{'engine':<10} {'threads':>7} {'prefill tok/s':>14} {'decode tok/s':>13} {'peak RSS MiB':>13}")
    for r in results:
        if not r.get("available"):
            print(f"{r['engine']:<10} {r['threads']:>7} {'unavailable':>14}")
            continue
        print(f"{r['engine']:<10} {r['threads']:>7} {r['prefill_tok_s']:>14.1f} {r['decode_tok_s']:>13.2f} "
              f"{r['peak_rss_mb']:>13.1f}")
    for threads, rt in ratios.items():
        print(f"ratio tritium/llama.cpp @ {threads} thread(s): prefill {rt['prefill_tok_s']:.2f}x, decode "
              f"{rt['decode_tok_s']:.2f}x, peak RSS {rt['peak_rss_mb']:.2f}x")
    doc = {"model": str(model), "model_bytes": model.stat().st_size, "results": results, "ratios": ratios}
    print(json.dumps(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
