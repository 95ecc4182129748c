#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) as a benchmark peer: prefill and decode speed and peak RSS of one GGUF.

Contract for benchmarks/decode.py (and anyone else):

    from benchmarks.llamacpp_peer import measure_llamacpp   # or load this file by path
    result = measure_llamacpp("model.gguf", threads=2)     # runs in its OWN process; returns a dict
    # {"peer": "llama.cpp", "available": True, "llama_cpp_python": "0.3.36", "model": ..., "threads": 2,
    #  "prefill_tokens": 128, "prefill_tok_s": ..., "decode_tokens": 128, "decode_tok_s": ...,
    #  "peak_rss_mb": ..., "load_s": ..., "settings": {...}}
    # When llama_cpp is not importable: {"peer": "llama.cpp", "available": False, "reason": "..."}.

CLI (prints that JSON on stdout, one line):

    python benchmarks/llamacpp_peer.py MODEL.gguf --threads 2 [--prompt-tokens 128] [--decode-tokens 128]

Method: the model is loaded with n_ctx = prompt + decode tokens (rounded up to 256), n_batch = n_ubatch =
prompt tokens, `threads` for both prompt and generation, the default F16 KV cache, no flash attention, mmap
on. After a 4-token warm-up (then cleared), the prompt (BOS + fixed pseudo-random ids from the vocab, seed 0)
is evaluated in ONE llama_decode call: prefill_tok_s = prompt tokens / wall seconds of that call. Then
`decode_tokens` tokens are generated one llama_decode call each, greedy (argmax of the last logits, in
numpy): decode_tok_s = decode tokens / wall seconds of the loop. peak_rss_mb is the child process's
ru_maxrss (whole life: load + run). Each measurement is a fresh process, so runs do not share caches or RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PEER = "llama.cpp"


def measure_llamacpp(model_path: str | Path, threads: int, prompt_tokens: int = 128, decode_tokens: int = 128,
                     timeout_s: float = 1800.0) -> dict:
    """Runs the measurement in a child Python process and returns its JSON result (see module doc)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), str(model_path), "--threads", str(threads),
           "--prompt-tokens", str(prompt_tokens), "--decode-tokens", str(decode_tokens)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"llama.cpp peer failed on {model_path} (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def _measure_here(model_path: str, threads: int, prompt_tokens: int, decode_tokens: int) -> dict:
    """The measurement itself, in this process (the CLI's child side)."""
    import resource

    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError as exc:
        return {"peer": PEER, "available": False, "reason": f"llama_cpp not importable: {exc}"}
    import numpy as np

    n_ctx = max(256, -(-(prompt_tokens + decode_tokens + 8) // 256) * 256)
    settings = {"n_ctx": n_ctx, "n_batch": prompt_tokens, "n_ubatch": prompt_tokens, "n_threads": threads,
                "n_threads_batch": threads, "kv_cache": "f16 (default)", "flash_attn": False,
                "use_mmap": True}
    t0 = time.perf_counter()
    llm = Llama(model_path=str(model_path), n_ctx=n_ctx, n_batch=prompt_tokens, n_ubatch=prompt_tokens,
                n_threads=threads, n_threads_batch=threads, logits_all=False, flash_attn=False,
                use_mmap=True, seed=0, verbose=False)
    load_s = time.perf_counter() - t0
    n_vocab = llm.n_vocab()
    bos = llm.token_bos()
    rng = np.random.default_rng(0)
    # ids from the upper part of the vocab (ordinary pieces in practice; the values do not change the cost)
    lo = min(1000, n_vocab // 2)
    prompt = ([bos] if bos >= 0 else []) + rng.integers(lo, n_vocab, prompt_tokens).tolist()
    prompt = prompt[:prompt_tokens]

    llm.eval(prompt[:4])  # warm-up: page in the weights, build the graph once
    llm.reset()

    t0 = time.perf_counter()
    llm.eval(prompt)
    prefill_s = time.perf_counter() - t0

    def last_logits() -> np.ndarray:
        return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))

    t0 = time.perf_counter()
    tok = int(np.argmax(last_logits()))
    for _ in range(decode_tokens):
        llm.eval([tok])
        tok = int(np.argmax(last_logits()))
    decode_s = time.perf_counter() - t0

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    return {
        "peer": PEER,
        "available": True,
        "llama_cpp_python": llama_cpp.__version__,
        "model": str(model_path),
        "threads": threads,
        "prefill_tokens": len(prompt),
        "prefill_tok_s": len(prompt) / prefill_s,
        "decode_tokens": decode_tokens,
        "decode_tok_s": decode_tokens / decode_s,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "load_s": round(load_s, 3),
        "settings": settings,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="GGUF file")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=128)
    a = ap.parse_args()
    print(json.dumps(_measure_here(a.model, a.threads, a.prompt_tokens, a.decode_tokens)), flush=True)


if __name__ == "__main__":
    main()
