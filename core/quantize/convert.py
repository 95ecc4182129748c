"""`quantize_model`: stream a checkpoint tensor by tensor through a quantizer into a GGUF file.

Order of work, so that bad input fails before anything is written:
1. open the source (names, shapes and dtypes checked against its config), configure the quantizer
   (it refuses option combinations its type cannot honour, with the reason), and ask it about every
   tensor (CanQuantize): a projection weight it will not take is an error naming the tensor and why;
2. check the destination's free space against the exact output size;
3. write a temporary file beside DST — header, then one tensor at a time (read -> quantize -> write, so
   memory holds one tensor) — fsync and rename it to DST. Any error, a full disk included, removes the
   temporary file: DST is never half-written.
Every tensor the quantizer returns is decoded by the core and compared with its source (verify.py): the
report's reconstruction error is measured, not the plugin's claim (which is kept beside it), and a source
that holds ternary values is checked to be kept exactly. Then the report: timing, sizes, per-tensor
errors and (optionally) the whole-model accuracy on the shipped text sample.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm
from tritium.core.formats.bitnet_tensors import LINEAR_NAMES
from tritium.core.formats.ggml_encode import encode_tensor
from tritium.core.formats.gguf_writer import FILE_TYPES, TensorPlan, bitnet_metadata, write_gguf

from .atomic_output import check_free_space, write_atomically
from .errors import QuantizeError
from .options import QuantizeOptions
from .quantizer_api import Quantizer, QuantizeSession
from .report import QuantizeReport, TensorRow
from .sources import ModelSource, SourceTensor, open_source
from .verify import check_tensor

OUTPUT_FILE_TYPES = {**FILE_TYPES, "TL1": 38}  # 38: bitnet.cpp's MOSTLY_TL1 id, marked as Tritium's layout
HEADER_SLACK = 1 << 20  # metadata + alignment headroom for the free-space check
ARCH_OF_ACT = {"silu": "bitnet", "relu2": "bitnet-b1.58"}


def _is_linear(name: str) -> bool:
    return name.split(".")[-2] in LINEAR_NAMES


def _plan_types(source: ModelSource, quantizer: Quantizer) -> dict[str, tuple[str, bool]]:
    """tensor -> (output type, quantized by the plugin?)."""
    out: dict[str, tuple[str, bool]] = {}
    for t in source.tensors:
        v = quantizer.can_quantize(t.name, t.shape)
        if v.ok:
            out[t.name] = (v.type_name, True)
        elif _is_linear(t.name):
            raise QuantizeError(f"{source.path}: tensor '{t.name}' {list(t.shape)}: the quantizer "
                                f"'{quantizer.name}' cannot take it: {v.reason}")
        elif t.name in ("token_embd.weight", "output.weight"):
            out[t.name] = ("F16", False)
        else:
            out[t.name] = ("F32", False)
    return out


def _metadata(source: ModelSource, options: QuantizeOptions, linear_type: str, dst: Path
              ) -> tuple[str, dict[str, object], dict[str, str]]:
    config = source.config
    if source.kind == "hf":
        config = replace(config, arch=ARCH_OF_ACT[config.ffn_act])
    tok = {k: v for k, v in source.metadata.items() if k.startswith("tokenizer.")}
    md = bitnet_metadata(config, name=dst.stem, file_type=OUTPUT_FILE_TYPES.get(linear_type, 0),
                         tokenizer=tok)
    md.update({"tritium.quantize.quant_type": options.quant_type,
               "tritium.quantize.group_size": options.group_size,
               "tritium.quantize.per_channel": options.per_channel,
               "tritium.quantize.quant_embd": options.quant_embd})
    if linear_type == "TL1":
        md.update({"tritium.tl1.layout": "tritium-tl1-v1", "tritium.tl1.bm": 16, "tritium.tl1.bk": 32})
    vtypes = {k: source.value_types[k] for k in tok if k in source.value_types}
    return config.arch, md, vtypes


def quantize_model(src: str | os.PathLike[str], dst: str | os.PathLike[str], options: QuantizeOptions, *,
                   quantizer: Quantizer, progress: bool = True, evaluate: bool = True,
                   eval_tokens: int = 128) -> QuantizeReport:
    """Convert `src` (HF folder or GGUF) to the GGUF `dst` with `quantizer`; returns the report.

    Raises QuantizeError (bad options, bad source, refused tensor, no space, failed write); `dst` is then
    untouched.
    """
    t0 = time.perf_counter()
    src_p, dst_p = Path(src), Path(dst)
    if dst_p.exists() and src_p.exists() and dst_p.resolve() == src_p.resolve():
        raise QuantizeError(f"{dst_p}: the output would overwrite the source")
    if dst_p.is_dir():
        raise QuantizeError(f"{dst_p}: is a directory; --out names the GGUF file to write")
    source = open_source(src_p)
    warnings = quantizer.configure(options)
    types = _plan_types(source, quantizer)
    linear_types = sorted({types[t.name][0] for t in source.tensors if _is_linear(t.name)})
    arch, md, vtypes = _metadata(source, options, linear_types[0], dst_p)

    report = QuantizeReport(source=str(src_p), output=str(dst_p), options=options.as_dict(),
                            quantizer=quantizer.name, notes=[*source.notes, *warnings])
    report.bytes_before = source.total_bytes
    bar = tqdm(total=len(source.tensors), desc=f"quantize {options.quant_type}", unit="tensor",
               file=sys.stderr, disable=not progress, leave=False)
    holder: dict[str, QuantizeSession] = {}

    def encoder(t: SourceTensor, type_name: str, via_plugin: bool):  # noqa: ANN202
        def encode() -> np.ndarray:
            t1 = time.perf_counter()
            buffer = getattr(holder["session"], "buffer", None) if via_plugin else None
            # read straight into the plugin session's shared memory when it offers a buffer
            x = source.read(t.name, out=None if buffer is None else buffer(t.shape))
            if via_plugin:
                q = holder["session"].quantize(t.name, x)
                if q.type_name != type_name:
                    raise QuantizeError(f"tensor '{t.name}': the quantizer produced {q.type_name}, but "
                                        f"CanQuantize announced {type_name}")
                data = q.data
                try:  # measured here on the decoded output, not taken from the plugin
                    check = check_tensor(type_name, data, x, claims_ternary=t.claims_ternary)
                except QuantizeError as exc:
                    raise QuantizeError(f"tensor '{t.name}': the quantizer's output: {exc}") from None
                row = TensorRow(t.name, list(t.shape), t.stored_as, type_name, t.nbytes, int(data.nbytes),
                                check.rmse, check.rel_error, 0.0, check.kept_ternary,
                                float(np.sqrt(max(q.mse, 0.0))))
                if check.kept_ternary is False:
                    report.notes.append(f"{t.name}: the source claims ternary values x a scale, but the "
                                        f"{type_name} output did not keep them in {check.rows_not_kept} of "
                                        f"{x.shape[0]} rows")
            else:
                data = encode_tensor(x, type_name)
                row = TensorRow(t.name, list(t.shape), t.stored_as, type_name, t.nbytes, int(data.nbytes),
                                None, None, 0.0)
            row.seconds = time.perf_counter() - t1
            report.tensors.append(row)
            bar.update(1)
            return data
        return encode

    plans = [TensorPlan(t.name, t.shape, types[t.name][0], encoder(t, *types[t.name]))
             for t in source.tensors]
    check_free_space(dst_p, sum(p.nbytes for p in plans) + HEADER_SLACK)
    try:
        with quantizer.session() as session:
            holder["session"] = session
            write_atomically(dst_p, lambda tmp: write_gguf(tmp, arch, md, plans, value_types=vtypes))
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t0
    report.bytes_after = dst_p.stat().st_size
    if evaluate:
        from .accuracy import evaluate as run_eval

        try:
            report.accuracy = run_eval(src_p, dst_p, n_tokens=eval_tokens)
            if report.accuracy is None:
                report.notes.append("accuracy not measured: tests/fixtures/text/public_domain.txt is absent")
        except Exception as exc:  # the conversion stands; say why accuracy is missing
            report.notes.append(f"accuracy not measured: {type(exc).__name__}: {exc}")
    return report
