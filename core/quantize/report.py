"""The report of one `tritium quantize` run: a table for people and JSON for machines.

Per tensor: type in/out, bytes in/out, reconstruction error (RMSE of dequantize(quantize(w)) against the
float source w, decoded and measured by the core, and the relative error RMSE / RMS(w)), whether a
ternary source was kept exactly (checked on the output), the quantizer's own RMSE claim, time.
For the run: wall time, throughput (source MB/s), size before/after, memory saved, and — when a text
sample was evaluated — the mean KL divergence of next-token distributions and the perplexity of the
source model and of the output, both run by Tritium's runtime on the same tokens.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field


@dataclass
class TensorRow:
    name: str
    shape: list[int]
    type_in: str
    type_out: str
    bytes_in: int
    bytes_out: int
    rmse: float | None  # of the decoded output against the source; None when the tensor was copied
    rel_error: float | None  # rmse / rms(source)
    seconds: float
    # None: the source does not claim ternary values; True: they and their scale (as the output type
    # stores it) were kept exactly, checked on the decoded output; False: they were not
    kept_ternary: bool | None = None
    plugin_rmse: float | None = None  # what the quantizer said (sqrt of its mse), for comparison


@dataclass
class Accuracy:
    text: str  # where the sample came from
    n_tokens: int
    mean_kl: float  # mean over positions of KL(P_source || P_output), nats
    max_kl: float
    ppl_source: float
    ppl_output: float
    argmax_agree: float  # fraction of positions whose top token is the same
    source_act_quant: str
    output_act_quant: str

    @property
    def ppl_change(self) -> float:
        return self.ppl_output - self.ppl_source


@dataclass
class QuantizeReport:
    source: str
    output: str
    options: dict[str, object]
    quantizer: str
    seconds: float = 0.0
    bytes_before: int = 0  # source tensor bytes as stored
    bytes_after: int = 0  # output file bytes
    tensors: list[TensorRow] = field(default_factory=list)
    accuracy: Accuracy | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.bytes_before / 1e6 / self.seconds if self.seconds > 0 else math.inf

    @property
    def memory_saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["mb_per_s"] = self.mb_per_s
        d["memory_saved"] = self.memory_saved
        d["memory_saved_fraction"] = self.memory_saved / self.bytes_before if self.bytes_before else 0.0
        if self.accuracy is not None:
            d["accuracy"]["ppl_change"] = self.accuracy.ppl_change
        return d

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    def render(self) -> str:
        lines = [f"tritium quantize: {self.source} -> {self.output}",
                 "options: " + ", ".join(f"{k}={v}" for k, v in self.options.items())
                 + f"; quantizer plugin '{self.quantizer}'", ""]
        hdr = (f"{'tensor':34} {'shape':>13} {'in':>16} {'out':>6} {'MB in':>8} {'MB out':>8} "
               f"{'rel err':>14}")
        lines += [hdr, "-" * len(hdr)]
        for t in self.tensors:
            rel = "copied" if t.rel_error is None else f"{t.rel_error:.4f}"
            if t.kept_ternary is not None:
                rel += " kept" if t.kept_ternary else " NOT kept"
            lines.append(f"{t.name:34} {'x'.join(map(str, t.shape)):>13} {t.type_in:>16} {t.type_out:>6} "
                         f"{t.bytes_in / 1e6:8.3f} {t.bytes_out / 1e6:8.3f} {rel:>14}")
        saved = self.memory_saved / self.bytes_before if self.bytes_before else 0.0
        lines += ["", f"time {self.seconds:.2f} s, throughput {self.mb_per_s:.1f} MB/s of source",
                  f"size {self.bytes_before / 1e6:.2f} MB -> {self.bytes_after / 1e6:.2f} MB "
                  f"(saved {self.memory_saved / 1e6:.2f} MB, {100 * saved:.1f}%)"]
        a = self.accuracy
        if a is not None:
            lines.append(f"accuracy on {a.n_tokens} tokens of {a.text}: mean KL {a.mean_kl:.5f} nats "
                         f"(max {a.max_kl:.4f}), perplexity {a.ppl_source:.4g} -> {a.ppl_output:.4g} "
                         f"({a.ppl_change:+.3g}), top-1 agreement {100 * a.argmax_agree:.1f}% "
                         f"[activations: source {a.source_act_quant}, output {a.output_act_quant}]")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"
