"""`tritium quantize --in SRC --out DST.gguf --quant-type {i2_s,tl1,tq1_0,tq2_0,f16,...}`.

Runs the conversion through a quantizer plugin process (default: the builtin `ternary`; `--plugin NAME`
picks any discovered quantizer, e.g. a third-party one on $TRITIUM_PLUGIN_PATH). Progress goes to
stderr; the report table to stdout; `--report-json FILE` also writes it as JSON (`--json`: JSON on
stdout instead of the table). Bad input ends in `error: <message>` and exit code 2, never a traceback,
and never a half-written output file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import QuantizeError
from .options import QUANT_TYPES, QuantizeOptions

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="src", required=True, metavar="SRC",
                        help="Hugging Face BitNet folder (unpacked or packed) or a GGUF file")
    parser.add_argument("--out", dest="dst", required=True, metavar="DST.gguf", help="GGUF file to write")
    parser.add_argument("--quant-type", default="i2_s", choices=sorted(QUANT_TYPES), metavar="TYPE",
                        help="i2_s (default), tl1, tq1_0, tq2_0, f16, or another type a plugin makes")
    parser.add_argument("--group-size", type=int, default=32, metavar="N",
                        help="values per group; must divide every quantized row (default 32)")
    parser.add_argument("--sym", action=argparse.BooleanOptionalAction, default=True,
                        help="symmetric quantization (default; ternary types require it)")
    parser.add_argument("--per-channel", action="store_true", help="one scale per output row")
    parser.add_argument("--quant-embd", action="store_true", help="token embedding (and lm_head) as Q8_0")
    parser.add_argument("--plugin", default="ternary", metavar="NAME",
                        help="quantizer plugin (default ternary)")
    parser.add_argument("--report-json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--no-eval", action="store_true", help="skip the KL / perplexity measurement")
    parser.add_argument("--eval-tokens", type=int, default=128, metavar="N",
                        help="tokens of the text sample for KL / perplexity (default 128)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run one conversion from parsed arguments; raises QuantizeError on bad input."""
    from .convert import quantize_model
    from .plugin_quantizer import PluginQuantizer

    options = QuantizeOptions(args.quant_type, args.group_size, args.sym, args.per_channel, args.quant_embd)
    if not Path(args.src).exists():
        raise QuantizeError(f"{args.src}: source does not exist")
    with PluginQuantizer(args.plugin) as quantizer:
        report = quantize_model(args.src, args.dst, options, quantizer=quantizer,
                                progress=not args.no_progress, evaluate=not args.no_eval,
                                eval_tokens=args.eval_tokens)
    if args.report_json:
        Path(args.report_json).write_text(report.dumps() + "\n", encoding="utf-8")
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.render())
    return 0


def register(subparsers: Any) -> None:
    """Add `quantize` to the `tritium` command line (core/cli)."""
    parser = subparsers.add_parser("quantize", help="convert a BitNet checkpoint to a GGUF type",
                                   description=__doc__.split("\n\n")[1])
    add_arguments(parser)
    parser.set_defaults(run=run)


def quantize_main(argv: Sequence[str] | None = None) -> int:
    """`tritium quantize ...` as a function: returns the exit code (0, or 2 with `error: ...` on stderr)."""
    parser = argparse.ArgumentParser(prog="tritium quantize", description=__doc__.split("\n\n")[1])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except QuantizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
