"""Quantizer throughput on the bitnet_b1_58-large shape (hidden 1536, ffn 4096, 24 layers).

For each type, MB/s of float32 source weights turned into GGUF bytes by the `ternary` plugin's engine
(absmean ternarization + numba encoder, the work the plugin process does per tensor, shared-memory
transfer excluded), measured on
`--layers` layers of the seven projections (timings scale linearly with the layer count; the 24-layer
time is extrapolated). In the same run, the `gguf` package's own numpy quantizers (gguf.quants.quantize)
for TQ1_0 and TQ2_0 on the same float weights, next to Tritium's encoder alone doing the same job
(float -> TQ bytes, byte-exact with gguf); the ratio column is ours / theirs (target >= 3x).

    .venv/bin/python benchmarks/quantize.py [--layers 1] [--repeat 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import quantize as gguf_quantize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tritium.plugins.quantizer_ternary.engine import Options, quantize_tensor  # noqa: E402

HIDDEN, FFN, LAYERS = 1536, 4096, 24
SHAPES = {"attn_q": (HIDDEN, HIDDEN), "attn_k": (HIDDEN, HIDDEN), "attn_v": (HIDDEN, HIDDEN),
          "attn_output": (HIDDEN, HIDDEN), "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN),
          "ffn_down": (HIDDEN, FFN)}
TYPES = ("i2_s", "tl1", "tq1_0", "tq2_0", "f16")


def weights(n_layers: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(f"blk.{i}.{n}.weight", rng.normal(0, 0.02, s).astype(np.float32))
            for i in range(n_layers) for n, s in SHAPES.items()]


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    ws = weights(args.layers)
    mb = sum(w.nbytes for _, w in ws) / 1e6
    for t in TYPES:  # compile / warm the numba kernels outside the timings
        quantize_tensor("blk.0.attn_q.weight", ws[0][1][:64, :512].copy(), Options(t.upper()))
    rows = []
    for t in TYPES:
        o = Options(t.upper())
        sec = best_time(lambda o=o: [quantize_tensor(n, w, o) for n, w in ws], args.repeat)
        out_bytes = sum(quantize_tensor(n, w, o).data.nbytes for n, w in ws[:7])
        rows.append({"type": t, "impl": "tritium (numba)", "seconds": sec, "mb_per_s": mb / sec,
                     "bytes_out_per_layer": out_bytes, "est_24_layers_s": sec * LAYERS / args.layers})
    from tritium.plugins.quantizer_ternary.tq_kernels import encode_tq1_0_numba, encode_tq2_0_numba

    for t, enc in (("tq1_0", encode_tq1_0_numba), ("tq2_0", encode_tq2_0_numba)):
        # the same job as gguf.quants: float -> TQ bytes (per-block absmax), byte-exact with it
        sec = best_time(lambda enc=enc: [enc(w) for _, w in ws], args.repeat)
        rows.append({"type": t, "impl": "tritium encode only", "seconds": sec, "mb_per_s": mb / sec,
                     "bytes_out_per_layer": None, "est_24_layers_s": sec * LAYERS / args.layers})
    for t in ("TQ1_0", "TQ2_0"):
        q = GGMLQuantizationType[t]
        sec = best_time(lambda q=q: [gguf_quantize(w, q) for _, w in ws], args.repeat)
        rows.append({"type": t.lower(), "impl": "gguf.quants (numpy)", "seconds": sec, "mb_per_s": mb / sec,
                     "bytes_out_per_layer": None, "est_24_layers_s": sec * LAYERS / args.layers})
    peer = {r["type"]: r["mb_per_s"] for r in rows if r["impl"].startswith("gguf")}
    for r in rows:
        r["vs_gguf"] = r["mb_per_s"] / peer[r["type"]] if r["type"] in peer and r["impl"].startswith("trit") \
            else None
    print(f"bitnet_b1_58-large shape, {args.layers} layer(s) of 7 projections = {mb:.1f} MB float32 source")
    print(f"{'type':7} {'implementation':22} {'s':>8} {'MB/s':>9} {'24-layer s':>11} {'vs gguf':>8}")
    for r in rows:
        ratio = f"{r['vs_gguf']:.1f}x" if r["vs_gguf"] else ""
        print(f"{r['type']:7} {r['impl']:22} {r['seconds']:8.3f} {r['mb_per_s']:9.1f} "
              f"{r['est_24_layers_s']:11.1f} {ratio:>8}")
    result = {"shape": {"hidden": HIDDEN, "ffn": FFN, "layers_timed": args.layers}, "source_mb": mb,
              "rows": rows}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
