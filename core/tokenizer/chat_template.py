"""Chat templates rendered the way transformers renders them (`apply_chat_template`).

The environment matches transformers': a jinja2 ImmutableSandboxedEnvironment with trim_blocks and
lstrip_blocks, the loopcontrols extension ({% break %}/{% continue %}), a `tojson` filter that keeps
non-ASCII text (ensure_ascii=False), and the globals `raise_exception(msg)` and `strftime_now(fmt)`.
Templates that mark assistant turns with {% generation %}...{% endgeneration %} (used by transformers to
build assistant masks) render their body unchanged.

Templates get `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and any extra keyword
(`tools`, `documents`, ...). Every failure (syntax error, `raise_exception`, undefined attribute access
the sandbox refuses, a Python error inside the template) becomes a TokenizerError that says what went wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tritium.core.errors import TokenizerError

# Used when the model defines no template: one "<|role|>" header line per message, the content on the next
# line, and "<|assistant|>" as the generation prompt. The role markers are plain text for any vocabulary.
# Example: [{"role": "user", "content": "hi"}] -> "<|user|>\nhi\n<|assistant|>\n".
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
# Its role markers are plain text, so a model using it needs them as stop strings: otherwise it goes on to
# write the next turn itself.
FALLBACK_TURN_MARKERS = ("<|user|>", "<|assistant|>", "<|system|>")


class _TemplateRaisedError(Exception):
    """What the template's own raise_exception() throws; carries the template author's message."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaisedError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # jinja2's built-in tojson escapes HTML characters and sorts keys; chat templates expect plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class _GenerationBlock(jinja2.ext.Extension):
    """{% generation %}body{% endgeneration %} renders `body` unchanged."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


@lru_cache(maxsize=32)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols, _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise TokenizerError(f"chat template: syntax error at line {e.lineno}: {e.message}") from e


def render_chat(template: str, messages: Sequence[Mapping[str, Any]], bos_token: str = "",
                eos_token: str = "", add_generation_prompt: bool = True, **extra: Any) -> str:
    """`messages` rendered with the Jinja `template` (see module doc for the environment).

    messages: [{"role": ..., "content": ...}, ...]; passed to the template as plain dicts/lists.
    Raises TokenizerError for a template that does not compile or fails while rendering."""
    if not isinstance(template, str) or not template:
        raise TokenizerError("chat template: expected a non-empty Jinja template string")
    compiled = _compile(template)
    try:
        return compiled.render(messages=[dict(m) for m in messages], bos_token=bos_token,
                               eos_token=eos_token, add_generation_prompt=add_generation_prompt, **extra)
    except _TemplateRaisedError as e:
        raise TokenizerError(f"chat template rejected the conversation: {e}") from e
    except jinja2.TemplateError as e:
        raise TokenizerError(f"chat template failed while rendering: {type(e).__name__}: {e}") from e
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        raise TokenizerError(f"chat template failed while rendering: {type(e).__name__}: {e}") from e
