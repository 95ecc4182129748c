"""`tritium generate`: complete one prompt; stdout is exactly the generated text."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tritium.core.cli.model_options import (
    add_model_arguments,
    add_sampling_arguments,
    diagnostic,
    load_model_and_runtime,
    sampling_params,
    timings_line,
)
from tritium.core.engine.generate import generate


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "generate", help="complete a prompt",
        description="Complete a prompt. stdout carries only the generated text; load time, timings "
                    "and progress go to stderr. The prompt is tokenized as the model's metadata says "
                    "(BOS or not).")
    parser.add_argument("--prompt", "-p", required=True, metavar="TEXT")
    parser.add_argument("--stream", action="store_true", help="write the text as it is generated")
    add_model_arguments(parser)
    add_sampling_arguments(parser, max_tokens=128)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    params = sampling_params(args)
    model, runtime = load_model_and_runtime(args)
    chunks = generate(model, args.prompt, params, runtime=runtime)
    out = sys.stdout
    pieces = []
    last = None
    for chunk in chunks:
        if args.stream and chunk.text:
            out.write(chunk.text)
            out.flush()
        pieces.append(chunk.text)
        last = chunk
    if not args.stream:
        out.write("".join(pieces))
    if out.isatty():
        out.write("\n")  # for a person at a terminal only; a pipe gets the exact text
    out.flush()
    if last is not None and last.stats is not None:
        diagnostic(args, timings_line(last.stats, last.finish_reason))
    return 0
