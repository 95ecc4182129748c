"""Options shared by the subcommands that run a model: which model, runtime settings, sampling knobs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tritium.core.errors import SamplingError
from tritium.core.sampling import SamplingParams

# Field of SamplingParams → the flag that sets it, so errors name what the user typed.
FLAG_OF_FIELD = {
    "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p", "min_p": "--min-p",
    "repetition_penalty": "--repeat-penalty", "penalty_last_n": "--repeat-last-n",
    "frequency_penalty": "--frequency-penalty", "presence_penalty": "--presence-penalty",
    "seed": "--seed", "max_tokens": "--max-tokens", "stop": "--stop",
}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and runtime")
    group.add_argument("--model", "-m", metavar="PATH",
                       help="GGUF file or Hugging Face folder (default: the built-in demo model)")
    group.add_argument("--threads", "-t", type=int, metavar="N", help="compute threads (default: all cores)")
    group.add_argument("--kv-dtype", choices=("f32", "f16"), default=None,
                       help="KV cache precision (default: as the model's origin runs it; f16 for GGUF)")
    group.add_argument("--n-ctx", "-c", type=int, metavar="N",
                       help="context window in tokens (default: the model's)")
    group.add_argument("--quiet", "-q", action="store_true", help="no diagnostics on stderr")


def add_sampling_arguments(parser: argparse.ArgumentParser, *, max_tokens: int) -> None:
    group = parser.add_argument_group("sampling (llama.cpp defaults; --temperature 0 is greedy)")
    group.add_argument("--max-tokens", "-n", type=int, default=max_tokens, metavar="N",
                       help=f"tokens to generate at most; -1 = until EOS or a full context "
                            f"(default {max_tokens})")
    group.add_argument("--temperature", "--temp", type=float, default=0.8, metavar="T")
    group.add_argument("--top-k", type=int, default=40, metavar="K", help="0 = off")
    group.add_argument("--top-p", type=float, default=0.95, metavar="P", help="1 = off")
    group.add_argument("--min-p", type=float, default=0.05, metavar="P", help="0 = off")
    group.add_argument("--repeat-penalty", type=float, default=1.0, metavar="X", help="1 = off")
    group.add_argument("--repeat-last-n", type=int, default=64, metavar="N",
                       help="tokens the repeat penalty looks back at; -1 = all")
    group.add_argument("--frequency-penalty", type=float, default=0.0, metavar="X")
    group.add_argument("--presence-penalty", type=float, default=0.0, metavar="X")
    group.add_argument("--seed", "-s", type=int, metavar="S", help="same seed, same output (default: random)")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="stop before this text (repeatable)")
    group.add_argument("--ignore-eos", action="store_true", help="keep generating past end-of-sequence")


def sampling_params(args: argparse.Namespace, *, extra_stop: tuple[str, ...] = ()) -> SamplingParams:
    """SamplingParams from the parsed flags; a SamplingError names the flag at fault."""
    params = SamplingParams(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repetition_penalty=args.repeat_penalty, penalty_last_n=args.repeat_last_n,
        frequency_penalty=args.frequency_penalty, presence_penalty=args.presence_penalty,
        seed=args.seed, max_tokens=None if args.max_tokens == -1 else args.max_tokens,
        stop=[*args.stop, *extra_stop], ignore_eos=args.ignore_eos)
    try:
        return params.validate()
    except SamplingError as e:
        field, _, rest = str(e).partition(":")
        raise SamplingError(f"{FLAG_OF_FIELD.get(field, field)}:{rest}") from None


def diagnostic(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def load_model_and_runtime(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load --model (or the demo model) and build its Runtime; report the load time on stderr."""
    from tritium.core.model.demo import demo_model_path
    from tritium.core.model.loader import load_model

    for flag, value in (("--threads", args.threads), ("--n-ctx", args.n_ctx)):
        if value is not None and value < 1:
            raise SamplingError(f"{flag}: expected an integer >= 1, got {value}")
    path = Path(args.model) if args.model else demo_model_path()
    t0 = time.perf_counter()
    model = load_model(path)
    from tritium.core.compute import Runtime  # after the model: a bad file is reported first

    runtime = Runtime(model.config, model.weights, threads=args.threads, kv_dtype=args.kv_dtype,
                      n_ctx=args.n_ctx)
    cfg = model.config
    diagnostic(args, f"loaded {path} ({model.format}, {cfg.arch}, {cfg.n_layer} layers, "
                     f"vocab {cfg.n_vocab}) in {time.perf_counter() - t0:.2f} s")
    return model, runtime


def timings_line(stats: Any, finish_reason: str | None) -> str:
    cached = f", {stats.cached_prompt_tokens} cached" if stats.cached_prompt_tokens else ""
    return (f"prompt: {stats.prompt_tokens} tokens{cached} in {stats.prefill_seconds:.3f} s "
            f"({stats.prefill_tokens_per_second:.1f} tok/s); "
            f"generated: {stats.completion_tokens} tokens in {stats.decode_seconds:.3f} s "
            f"({stats.decode_tokens_per_second:.1f} tok/s); finish: {finish_reason}")
