"""`tritium chat`: an interactive conversation over stdin lines, using the model's chat template.

Works with a pipe as well as a terminal, so tests can script a conversation. `/exit` or end of input
quits. Each reply is written to stdout followed by a newline; the "> " prompt goes to stderr and only
when stdin is a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from tritium.core.engine.generate import context_size, generate
from tritium.core.engine.prompt_cache import PromptCache
from tritium.core.errors import ContextOverflowError
from tritium.core.tokenizer import FALLBACK_TURN_MARKERS

EXIT_COMMANDS = ("/exit", "/quit")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat", help="interactive chat with the model's chat template",
        description="Chat over stdin lines (a terminal or a pipe). /exit or end of input quits.")
    parser.add_argument("--system", metavar="TEXT", help="a system message to start the conversation")
    add_model_arguments(parser)
    add_sampling_arguments(parser, max_tokens=256)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model, runtime = load_model_and_runtime(args)
    tokenizer = model.tokenizer
    if not tokenizer.chat_template:
        diagnostic(args, "note: the model has no chat template; using a plain <|role|> format")
    params = sampling_params(args, extra_stop=() if tokenizer.chat_template else FALLBACK_TURN_MARKERS)
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    interactive = sys.stdin.isatty()
    cache = PromptCache()  # each turn re-evaluates only what follows the conversation's cached prefix
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() in EXIT_COMMANDS:
            return 0
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        ids = tokenizer.encode_chat(messages)
        # A long conversation gets a shorter reply rather than an error, while anything fits at all.
        room = context_size(model, runtime) - len(ids)
        turn_params = params
        if params.max_tokens is not None and 0 < room < params.max_tokens:
            turn_params = dataclasses.replace(params, max_tokens=room)
        try:
            chunks = generate(model, ids, turn_params, runtime=runtime, cache=cache)
        except ContextOverflowError as e:
            print(f"error: {e}; this message was dropped", file=sys.stderr, flush=True)
            messages.pop()
            continue
        reply: list[str] = []
        last = None
        try:
            for chunk in chunks:
                # Templates end the generation prompt with a newline; the model's leading space is noise.
                text = chunk.text if reply else chunk.text.lstrip()
                if text:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                    reply.append(text)
                last = chunk
        except KeyboardInterrupt:  # Ctrl-C ends this reply, not the conversation
            if not interactive:
                raise
        sys.stdout.write("\n")
        sys.stdout.flush()
        messages.append({"role": "assistant", "content": "".join(reply).strip()})
        if last is not None and last.stats is not None:
            diagnostic(args, timings_line(last.stats, last.finish_reason))
