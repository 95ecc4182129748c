"""`tritium` command line: one module per subcommand, each with `register(subparsers)`.

`main` turns every error Tritium raises on purpose (bad model file, prompt too long, invalid sampling
values) into `error: <message>` on stderr and exit code 2, never a traceback. stdout carries only what
the command produces (the generated text for `generate`), so scripts can use it as is.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tritium.core.cli import chat_command, generate_command, inspect_command, serve_command
from tritium.core.errors import TritiumError
from tritium.core.quantize import cli as quantize_command
from tritium.plugin_host import cli as plugins_command
from tritium.plugin_host import doctor_cli, signing_cli
from tritium.plugin_host.errors import PluginError, SignatureError

EXIT_USAGE = 2  # bad input: the same code argparse uses for a bad command line
EXIT_INTERNAL = 1
SUBCOMMANDS = (generate_command, chat_command, inspect_command, serve_command, quantize_command,
               plugins_command, signing_cli, doctor_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tritium", description="Tritium: inference for BitNet b1.58 (ternary) models.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except TritiumError as e:
        return _fail(str(e), EXIT_USAGE)
    except SignatureError as e:
        return _fail(f"{e}\n  (a source checkout has no release signatures: run its builtin plugins with "
                     f"TRITIUM_ALLOW_UNSIGNED_PLUGINS=1, or sign them: see trust/README.md)", EXIT_USAGE)
    except PluginError as e:  # a plugin refused, failed to start, or broke the contract
        return _fail(str(e), EXIT_USAGE)
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            # The reader went away (e.g. `| head`): silence the flush at exit, as the Python docs advise.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_INTERNAL
        return _fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("TRITIUM_DEBUG"):
            raise
        return _fail(f"internal error ({type(e).__name__}: {e}); set TRITIUM_DEBUG=1 for a traceback",
                     EXIT_INTERNAL)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
