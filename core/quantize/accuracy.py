"""Whole-model accuracy of a conversion: run the source and the output through Tritium's runtime on the
same tokens of a shipped text sample and compare next-token distributions (mean KL) and perplexity.

The sample is the held-out tail of tests/fixtures/text/public_domain.txt (paragraphs from byte 132,585,
never trained on by the demo model), cut to `n_tokens` tokens of the *source* model's tokenizer, so
both models see identical ids. Kept short: this is a regression signal, not a benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .report import Accuracy

REPO = Path(__file__).resolve().parents[2]
SAMPLE_TEXT = REPO / "tests" / "fixtures" / "text" / "public_domain.txt"
HELD_OUT_FROM = 132_585  # tests/fixtures/text/README.md states it; a test keeps the two equal
DEFAULT_TOKENS = 128


def sample_text(path: Path = SAMPLE_TEXT, n_chars: int = 4000) -> str | None:
    """The held-out text sample, or None when the file is not there."""
    if not path.is_file():
        return None
    raw = path.read_bytes()
    if len(raw) < HELD_OUT_FROM + 100:  # never fall back to text the demo model was trained on
        return None
    return raw[HELD_OUT_FROM:HELD_OUT_FROM + n_chars].decode("utf-8", errors="ignore")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def compare_logits(src: np.ndarray, out: np.ndarray, tokens: list[int]) -> tuple[float, float, float, float,
                                                                                   float]:
    """(mean KL(P_src||P_out), max KL, ppl_src, ppl_out, argmax agreement) over positions 0..T-2."""
    ls, lo = _log_softmax(src[:-1]), _log_softmax(out[:-1])
    kl = (np.exp(ls) * (ls - lo)).sum(axis=-1)
    nxt = np.asarray(tokens[1:])
    rows = np.arange(len(nxt))
    ppl_s = float(np.exp(-ls[rows, nxt].mean()))
    ppl_o = float(np.exp(-lo[rows, nxt].mean()))
    agree = float((src[:-1].argmax(-1) == out[:-1].argmax(-1)).mean())
    return float(kl.mean()), float(kl.max()), ppl_s, ppl_o, agree


def evaluate(source: Path, output: Path, *, n_tokens: int = DEFAULT_TOKENS,
             text_path: Path = SAMPLE_TEXT) -> Accuracy | None:
    """Accuracy of `output` against `source` on the text sample; None if the sample file is absent."""
    from tritium.core.compute import Runtime
    from tritium.core.model.loader import load_model

    text = sample_text(text_path)
    if text is None:
        return None
    src = load_model(source)
    tokens = src.tokenizer.encode(text, add_bos=True)[:n_tokens]
    logits = []
    models = [src]
    for i, path in enumerate((source, output)):
        m = models[0] if i == 0 else load_model(path)
        rt = Runtime(m.config, m.weights, n_ctx=max(len(tokens), 8))
        logits.append(rt.eval(rt.new_sequence(), tokens, all_logits=True))
        models.append(m)
    mean_kl, max_kl, ppl_s, ppl_o, agree = compare_logits(logits[0], logits[1], tokens)
    return Accuracy(text=f"{text_path.name} (held-out tail)", n_tokens=len(tokens), mean_kl=mean_kl,
                    max_kl=max_kl, ppl_source=ppl_s, ppl_output=ppl_o, argmax_agree=agree,
                    source_act_quant=models[1].config.act_quant, output_act_quant=models[2].config.act_quant)
