"""Train Tritium's built-in demo model and write it as a llama.cpp `bitnet` GGUF (TQ2_0).

The model is a 4-layer BitNet b1.58 (ternary weights, int8 activations) trained with quantization-aware
training on `tests/fixtures/text/public_domain.txt` (original English prose written for Tritium and
dedicated to the public domain, CC0; see that folder's README), so that `tritium generate` without a
model prints English-looking words offline. The whole pipeline is deterministic:

    text -> SPM vocab (BPE merges, score = -rank) -> SPM token ids -> QAT training -> GGUF export
         -> sanity check of the *exported file* with a numpy forward that simulates llama.cpp's Q8_K

Run it in a venv that has the pinned training peers (never an unpinned torch, which pulls CUDA):

    python3 -m venv /tmp/demo-venv
    /tmp/demo-venv/bin/pip install torch==2.13.0 numpy tokenizers==0.23.3 gguf==0.19.0
    /tmp/demo-venv/bin/python tools/train_demo_model.py            # writes core/model/demo/tritium-demo.gguf

Determinism: fixed seeds, one torch thread, a fixed step count (never a wall-clock stop), and a BPE
trainer whose ties are broken deterministically. Same torch/tokenizers versions on the same kind of CPU
give a byte-identical file; a different CPU (other SIMD paths) may differ in the last bits of the
weights. The shipped file's sha256 is recorded in `core/model/demo/README.md` and checked by
`tests/demo/test_demo_model.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEXT_PATH = REPO / "tests" / "fixtures" / "text" / "public_domain.txt"
OUT_PATH = REPO / "core" / "model" / "demo" / "tritium-demo.gguf"

SPACE = "\u2581"  # "▁": SentencePiece's visible space
HELDOUT_FRACTION = 0.10  # the last 10% of the text (by paragraph start) is never trained on
N_SPECIAL = 3  # <unk>, <s>, </s>
N_BYTE = 256  # <0x00>..<0xFF>
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
# gguf token types
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_BYTE = 1, 2, 3, 6


@dataclass(frozen=True)
class DemoConfig:
    """Architecture and training recipe. Changing anything here changes the shipped file."""

    n_vocab: int = 2048
    n_embd: int = 256
    n_ff: int = 768
    n_layer: int = 4
    n_head: int = 4
    n_ctx: int = 512
    rms_eps: float = 1e-5
    rope_base: float = 10000.0
    # training
    seed: int = 1234
    seq_len: int = 512
    batch: int = 8
    steps: int = 400
    lr: float = 3e-3
    lr_min_ratio: float = 0.1
    warmup: int = 40
    weight_decay: float = 0.1

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


# --------------------------------------------------------------------------------------------------
# Text


def split_paragraphs(text: str) -> tuple[list[str], list[str]]:
    """Split the sample into (training, held-out) paragraphs; held-out = those starting in the last 10%."""
    paragraphs: list[str] = []
    starts: list[int] = []
    for m in re.finditer(r"[^\n]+(?:\n[^\n]+)*", text):
        paragraphs.append(" ".join(m.group(0).split()))
        starts.append(m.start())
    cut = len(text) * (1.0 - HELDOUT_FRACTION)
    train = [p for p, s in zip(paragraphs, starts, strict=True) if s < cut]
    heldout = [p for p, s in zip(paragraphs, starts, strict=True) if s >= cut]
    return train, heldout


# --------------------------------------------------------------------------------------------------
# Vocabulary: SPM pieces whose scores make llama.cpp's bigram merge reproduce BPE merge order


def _training_chunks(paragraphs: list[str]) -> list[str]:
    """Word-like chunks as the SPM tokenizer sees them (spaces as ▁), so no merge crosses a word or
    glues letters to punctuation."""
    chunks: list[str] = []
    for p in paragraphs:
        s = SPACE + p.replace(" ", SPACE)
        chunks.extend(re.findall(rf"{SPACE}?[A-Za-z]+|{SPACE}?[0-9]+|{SPACE}?[^A-Za-z0-9{SPACE}]|{SPACE}", s))
    return chunks


def build_vocab(train_paragraphs: list[str], n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """Return (pieces, scores, types) for the whole vocab: specials, 256 byte tokens, then NORMAL pieces.

    The NORMAL pieces are the characters of the training text plus BPE merges learned by `tokenizers`.
    Merge rank r gets score -r, so llama.cpp's SPM (which merges the adjacent pair whose concatenation
    has the highest score first) replays the BPE merge order; single characters score below all merges.
    """
    from tokenizers import Tokenizer, models, trainers

    n_normal = n_vocab - N_SPECIAL - N_BYTE
    tok = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=n_normal, min_frequency=2, show_progress=False)
    tok.train_from_iterator(_training_chunks(train_paragraphs), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    merged = ["".join(m) for m in merges]
    chars = sorted(p for p in model["vocab"] if len(p) == 1)
    if SPACE not in chars:
        chars = sorted([*chars, SPACE])
    normal = chars + merged
    if len(set(normal)) != len(normal):
        raise ValueError("BPE produced duplicate pieces")
    # Fill up to n_vocab if the text had fewer merges than room (keeps the embedding shape fixed).
    if len(normal) > n_normal:
        raise ValueError(f"vocab overflow: {len(normal)} normal pieces > {n_normal}")
    n_merges = len(merged)
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    scores = [0.0, 0.0, 0.0] + [0.0] * 256
    types = [TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL] + [TYPE_BYTE] * 256
    for i, c in enumerate(chars):
        pieces.append(c)
        scores.append(float(-(n_merges + 1 + i)))
        types.append(TYPE_NORMAL)
    for r, m in enumerate(merged):
        pieces.append(m)
        scores.append(float(-r))
        types.append(TYPE_NORMAL)
    while len(pieces) < n_vocab:  # pad with unreachable pieces (never produced by the merge)
        pieces.append(f"<pad{len(pieces)}>")
        scores.append(-1e9)
        types.append(TYPE_CONTROL)
    return pieces, scores, types


class SpmEncoder:
    """llama.cpp's SPM tokenizer (llm_tokenizer_spm): repeatedly merge the adjacent pair whose
    concatenation is a vocab piece with the highest score (ties: leftmost), byte fallback for the rest.

    Used only to encode the training text; Tritium's own tokenizer must give the same ids, and the
    script cross-checks that when `tritium.core.tokenizer` is importable."""

    def __init__(self, pieces: list[str], scores: list[float], types: list[int]) -> None:
        self.pieces = pieces
        self.scores = scores
        self.lookup = {p: i for i, p in enumerate(pieces) if types[i] in (TYPE_NORMAL, TYPE_UNKNOWN)}

    def encode(self, text: str) -> list[int]:
        """Ids for `text` with llama's leading space (add_space_prefix), no BOS."""
        if not text:
            return []
        syms = list(SPACE + text.replace(" ", SPACE))
        n = len(syms)
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        alive = [True] * n
        heap: list[tuple[float, int, int, str]] = []

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            merged = syms[left] + syms[right]
            tid = self.lookup.get(merged)
            if tid is not None:
                heapq.heappush(heap, (-self.scores[tid], left, right, merged))

        for i in range(1, n):
            push(i - 1, i)
        while heap:
            _, left, right, merged = heapq.heappop(heap)
            if not (alive[left] and alive[right]) or syms[left] + syms[right] != merged or nxt[left] != right:
                continue  # stale: one side was merged since this bigram was queued
            syms[left] = merged
            alive[right] = False
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])
        ids: list[int] = []
        i = 0
        while i >= 0:
            tid = self.lookup.get(syms[i])
            if tid is not None:
                ids.append(tid)
            else:
                ids.extend(N_SPECIAL + b for b in syms[i].encode("utf-8"))
            i = nxt[i]
        return ids

    def decode(self, ids: list[int]) -> str:
        out = bytearray()
        for t in ids:
            if N_SPECIAL <= t < N_SPECIAL + N_BYTE:
                out.append(t - N_SPECIAL)
            elif t >= N_SPECIAL + N_BYTE:
                out += self.pieces[t].replace(SPACE, " ").encode("utf-8")
        s = out.decode("utf-8", errors="replace")
        return s[1:] if s.startswith(" ") else s


def token_stream(enc: SpmEncoder, paragraphs: list[str]) -> np.ndarray:
    """Each paragraph as a document: <s> ids </s> (llama adds BOS at inference, as the file says)."""
    ids: list[int] = []
    for p in paragraphs:
        ids.append(BOS_ID)
        ids.extend(enc.encode(p))
        ids.append(EOS_ID)
    return np.asarray(ids, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# The model (torch), BitNet b1.58 QAT in llama.cpp's `bitnet` graph


def build_model(cfg: DemoConfig):  # noqa: ANN201 - torch types are optional at import time
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812 - torch's convention

    def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return x + (q - x).detach()

    class BitLinear(nn.Module):
        """Ternary weights (absmean per tensor) and per-token absmax int8 activations, both with a
        straight-through estimator (BitNet b1.58)."""

        def __init__(self, n_in: int, n_out: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.02)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s_x = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
            xq = ste(x, (x * s_x).round().clamp(-128, 127) / s_x)
            w = self.weight
            s_w = w.abs().mean().clamp(min=1e-5)
            wq = ste(w, (w / s_w).round().clamp(-1, 1) * s_w)
            return F.linear(xq, wq)

    class RMSNorm(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.rms_eps) * self.weight

    def rope_neox(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2  # pairs (i, i + half): ggml's NEOX rope
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d, f = cfg.n_embd, cfg.n_ff
            self.attn_norm, self.attn_sub_norm = RMSNorm(d), RMSNorm(d)
            self.ffn_norm, self.ffn_sub_norm = RMSNorm(d), RMSNorm(f)
            self.attn_q, self.attn_k, self.attn_v = BitLinear(d, d), BitLinear(d, d), BitLinear(d, d)
            self.attn_output = BitLinear(d, d)
            self.ffn_gate, self.ffn_up, self.ffn_down = BitLinear(d, f), BitLinear(d, f), BitLinear(f, d)

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
            B, T, _ = x.shape
            H, hd = cfg.n_head, cfg.head_dim
            h = self.attn_norm(x)
            q = self.attn_q(h).view(B, T, H, hd).transpose(1, 2)
            k = self.attn_k(h).view(B, T, H, hd).transpose(1, 2)
            v = self.attn_v(h).view(B, T, H, hd).transpose(1, 2)
            q, k = rope_neox(q, cos, sin), rope_neox(k, cos, sin)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            a = a.transpose(1, 2).reshape(B, T, cfg.n_embd)
            x = x + self.attn_output(self.attn_sub_norm(a))
            h = self.ffn_norm(x)
            f = F.silu(self.ffn_gate(h)) * self.ffn_up(h)
            return x + self.ffn_down(self.ffn_sub_norm(f))

    class DemoBitNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token_embd = nn.Parameter(torch.randn(cfg.n_vocab, cfg.n_embd) * 0.02)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg.n_layer)])
            self.output_norm = RMSNorm(cfg.n_embd)
            hd = cfg.head_dim
            inv = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
            ang = torch.arange(cfg.n_ctx, dtype=torch.float64)[:, None] * inv[None, :]
            self.register_buffer("cos", ang.cos().float(), persistent=False)
            self.register_buffer("sin", ang.sin().float(), persistent=False)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            T = ids.shape[1]
            x = self.token_embd[ids]
            cos, sin = self.cos[:T], self.sin[:T]
            for blk in self.blocks:
                x = blk(x, cos, sin)
            return self.output_norm(x) @ self.token_embd.t()  # tied lm_head, as llama.cpp's bitnet graph

    return DemoBitNet()


def train(cfg: DemoConfig, train_ids: np.ndarray, heldout_ids: np.ndarray, log_every: int = 50):  # noqa: ANN201
    """Train with AdamW for exactly cfg.steps steps; returns (model, history dict)."""
    import torch
    from torch.nn import functional as F  # noqa: N812 - torch's convention

    torch.set_num_threads(1)  # the build machine's 2 vCPUs are shared
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    model = build_model(cfg)
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.dim() == 2)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    data = torch.from_numpy(train_ids)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: dict[str, list] = {"step": [], "loss": [], "heldout": []}
    t0 = time.time()
    ema = None
    for step in range(cfg.steps):
        if step < cfg.warmup:
            lr = cfg.lr * (step + 1) / cfg.warmup
        else:
            prog = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
            lr = cfg.lr * (cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(data) - cfg.seq_len - 1, (cfg.batch,), generator=gen)
        idx = starts[:, None] + torch.arange(cfg.seq_len + 1)[None, :]
        chunk = data[idx]
        logits = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.n_vocab), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % log_every == 0 or step == cfg.steps - 1:
            # Held-out loss along the way shows whether the small corpus is being memorized (it uses no
            # randomness, so it does not change the training run).
            held = evaluate(model, cfg, heldout_ids)
            history["step"].append(step)
            history["loss"].append(round(ema, 4))
            history["heldout"].append(round(held, 4))
            print(f"step {step:5d}  loss {loss.item():.3f}  ema {ema:.3f}  held-out {held:.3f}  lr {lr:.2e}  "
                  f"{time.time() - t0:6.0f}s", flush=True)
    history["train_seconds"] = round(time.time() - t0, 1)
    history["final_train_loss_ema"] = round(ema, 4)
    model.eval()
    history["heldout_loss"] = round(evaluate(model, cfg, heldout_ids), 4)
    history["train_eval_loss"] = round(evaluate(model, cfg, train_ids[: len(heldout_ids)]), 4)
    return model, history


def evaluate(model, cfg: DemoConfig, ids: np.ndarray) -> float:  # noqa: ANN001
    """Mean next-token cross-entropy over non-overlapping windows of seq_len (QAT forward)."""
    import torch
    from torch.nn import functional as F  # noqa: N812 - torch's convention

    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids) - 1, cfg.seq_len):
            chunk = torch.from_numpy(ids[s : s + cfg.seq_len + 1])[None]
            if chunk.shape[1] < 2:
                break
            logits = model(chunk[:, :-1])
            total += F.cross_entropy(logits[0], chunk[0, 1:], reduction="sum").item()
            count += chunk.shape[1] - 1
    return total / count


# --------------------------------------------------------------------------------------------------
# Export


def ternarize(w: np.ndarray) -> tuple[np.ndarray, float]:
    """Absmean ternarization exactly as in training; scale rounded to fp16 as TQ2_0 stores it."""
    s = max(float(np.abs(w).mean()), 1e-5)
    q = np.clip(np.round(w / s), -1, 1).astype(np.float32)
    return q, float(np.float16(s))


def export_gguf(model, cfg: DemoConfig, pieces: list[str], scores: list[float], types: list[int],  # noqa: ANN001
                path: Path) -> None:
    """Write the llama.cpp `bitnet` GGUF: F16 token_embd (tied output), F32 norms, TQ2_0 projections."""
    import gguf

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "bitnet")
    w.add_name("tritium-demo")
    w.add_description("Tiny BitNet b1.58 demo model trained on original CC0 English prose (see README)")
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_TQ2_0))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg.n_ctx)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(cfg.n_ff)
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_head)
    w.add_layer_norm_rms_eps(cfg.rms_eps)
    w.add_rope_freq_base(cfg.rope_base)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(1.0)
    w.add_vocab_size(cfg.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(UNK_ID)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)

    w.add_tensor("token_embd.weight", sd["token_embd"].astype(np.float16))
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        for name in ("attn_norm", "attn_sub_norm", "ffn_norm", "ffn_sub_norm"):
            w.add_tensor(f"blk.{i}.{name}.weight", sd[p + name + ".weight"])
        for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            q, s = ternarize(sd[p + name + ".weight"])
            # d = block absmax of q*s = s in every block with a nonzero weight (FORMATS.md, TQ2_0).
            tq2 = gguf.quants.quantize(q * np.float32(s), gguf.GGMLQuantizationType.TQ2_0)
            w.add_tensor(f"blk.{i}.{name}.weight", tq2, raw_dtype=gguf.GGMLQuantizationType.TQ2_0)
    w.add_tensor("output_norm.weight", sd["output_norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# --------------------------------------------------------------------------------------------------
# Sanity check of the exported file: numpy forward with llama.cpp's Q8_K activation quantization


def q8k_fake_quant(x: np.ndarray) -> np.ndarray:
    """Rows of x quantized per 256 elements as ggml's quantize_row_q8_K, returned dequantized."""
    shape = x.shape
    b = x.reshape(-1, 256).astype(np.float32)
    idx = np.abs(b).argmax(axis=1)  # first element of largest |x| (signed value kept)
    mx = b[np.arange(len(b)), idx]
    out = np.zeros_like(b)
    nz = mx != 0
    iscale = np.float32(-127.0) / mx[nz]
    q = np.minimum(127, np.rint(b[nz] * iscale[:, None]))
    out[nz] = q * (np.float32(1.0) / iscale)[:, None]
    return out.reshape(shape)


def load_exported(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read the GGUF back (metadata + dequantized tensors in numpy [ne1, ne0] order)."""
    import gguf

    r = gguf.GGUFReader(str(path))
    meta = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        meta[f.name] = f.contents()
    tensors = {}
    for t in r.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))
        if t.tensor_type == gguf.GGMLQuantizationType.TQ2_0:
            tensors[t.name] = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
        else:
            tensors[t.name] = np.asarray(t.data, dtype=np.float32).reshape(shape)
    return meta, tensors


def numpy_forward(tw: dict[str, np.ndarray], cfg: DemoConfig, ids: list[int]) -> np.ndarray:
    """Logits [T, n_vocab] of llama.cpp's bitnet graph (F32 KV, Q8_K activations for TQ matmuls)."""
    def rms(x: np.ndarray, wt: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + cfg.rms_eps) * wt

    def mm(name: str, x: np.ndarray) -> np.ndarray:
        return q8k_fake_quant(x) @ tw[name].T

    T, H, hd = len(ids), cfg.n_head, cfg.head_dim
    x = tw["token_embd.weight"][ids].astype(np.float32)
    half = hd // 2
    inv = cfg.rope_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)

    def rope(v: np.ndarray) -> np.ndarray:  # v [T, H, hd]
        a, b = v[..., :half], v[..., half:]
        c, s = cos[:, None, :], sin[:, None, :]
        return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)

    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    for i in range(cfg.n_layer):
        p = f"blk.{i}."
        h = rms(x, tw[p + "attn_norm.weight"])
        q = rope(mm(p + "attn_q.weight", h).reshape(T, H, hd))
        k = rope(mm(p + "attn_k.weight", h).reshape(T, H, hd))
        v = mm(p + "attn_v.weight", h).reshape(T, H, hd)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", att, v).reshape(T, cfg.n_embd)
        x = x + mm(p + "attn_output.weight", rms(a, tw[p + "attn_sub_norm.weight"]))
        h = rms(x, tw[p + "ffn_norm.weight"])
        g, u = mm(p + "ffn_gate.weight", h), mm(p + "ffn_up.weight", h)
        f = g / (1 + np.exp(-g)) * u
        x = x + mm(p + "ffn_down.weight", rms(f, tw[p + "ffn_sub_norm.weight"]))
    return rms(x, tw["output_norm.weight"]) @ tw["token_embd.weight"].T


def greedy(tw: dict[str, np.ndarray], cfg: DemoConfig, ids: list[int], n_new: int) -> list[int]:
    """Greedy continuation (recomputes the full prefix each step: slow but obviously right)."""
    out = list(ids)
    for _ in range(n_new):
        nxt = int(numpy_forward(tw, cfg, out)[-1].argmax())
        out.append(nxt)
        if nxt == EOS_ID:
            break
    return out[len(ids):]


def word_fraction(text: str, vocabulary: set[str]) -> float:
    words = re.findall(r"[A-Za-z]+", text)
    return sum(w.lower() in vocabulary for w in words) / max(1, len(words))


# --------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT_PATH)
    ap.add_argument("--steps", type=int, default=None,
                    help="override the step count (for a quick smoke run; not the shipped recipe)")
    ap.add_argument("--report", type=Path, default=None, help="write a JSON report of the run here")
    args = ap.parse_args()
    cfg = DemoConfig() if args.steps is None else DemoConfig(steps=args.steps)

    text = TEXT_PATH.read_text(encoding="utf-8")
    train_pars, heldout_pars = split_paragraphs(text)
    pieces, scores, types = build_vocab(train_pars, cfg.n_vocab)
    enc = SpmEncoder(pieces, scores, types)
    t0 = time.time()
    train_ids = token_stream(enc, train_pars)
    heldout_ids = token_stream(enc, heldout_pars)
    chars_per_token = len(text) / (len(train_ids) + len(heldout_ids))
    print(f"vocab {len(pieces)}; train {len(train_ids)} tokens, held-out {len(heldout_ids)} tokens "
          f"({time.time() - t0:.1f}s to encode); chars/token {chars_per_token:.2f}")
    roundtrip = all(enc.decode(enc.encode(p)) == p for p in train_pars[:200])
    print(f"encode/decode round trip on 200 paragraphs: {roundtrip}")

    model, hist = train(cfg, train_ids, heldout_ids)
    print(f"train loss (ema) {hist['final_train_loss_ema']}, eval on train slice {hist['train_eval_loss']}, "
          f"held-out {hist['heldout_loss']} (ppl {math.exp(hist['heldout_loss']):.1f}); "
          f"{hist['train_seconds']}s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    export_gguf(model, cfg, pieces, scores, types, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) sha256 {digest}")

    # Sanity check on the exported bytes, with llama.cpp's Q8_K activations instead of per-token absmax.
    _, tw = load_exported(args.out)
    vocabulary = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
    samples = {}
    for prompt in ("Once upon a time", "The princess", "The king said"):
        ids = [BOS_ID, *enc.encode(prompt)]
        new = greedy(tw, cfg, ids, 48)
        out = enc.decode([t for t in new if t != EOS_ID])
        samples[prompt] = out
        frac = word_fraction(out, vocabulary)
        print(f"[greedy] {prompt!r} -> {out!r}  (words in text vocabulary: {frac:.0%})")
    check = [BOS_ID, *heldout_ids[1:65].tolist()]
    with_np = numpy_forward(tw, cfg, check)
    import torch

    with torch.no_grad():
        with_torch = model(torch.tensor([check]))[0].numpy()
    agree = float((with_np.argmax(-1) == with_torch.argmax(-1)).mean())
    print(f"numpy(Q8_K, exported) vs torch(QAT) argmax agreement on 65 held-out tokens: {agree:.0%}")

    if args.report:
        args.report.write_text(json.dumps({"config": cfg.__dict__, "history": hist, "sha256": digest,
                                           "bytes": args.out.stat().st_size, "samples": samples,
                                           "argmax_agreement": agree, "n_train_tokens": len(train_ids),
                                           "n_heldout_tokens": len(heldout_ids)}, indent=1))


if __name__ == "__main__":
    main()
