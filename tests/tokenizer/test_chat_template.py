"""Chat templates rendered like transformers: Llama 3 and ChatML templates, the environment's helpers,
errors, and the fallback template."""

from __future__ import annotations

import datetime

import pytest
from tritium.core.errors import TokenizerError
from tritium.core.tokenizer import FALLBACK_CHAT_TEMPLATE, from_gguf_metadata, render_chat

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  Hi there!  "}]


def test_llama3_template():
    out = render_chat(LLAMA3_TEMPLATE, MESSAGES, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")
    assert out == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n")
    no_prompt = render_chat(LLAMA3_TEMPLATE, MESSAGES, bos_token="<|begin_of_text|>",
                            add_generation_prompt=False)
    assert no_prompt.endswith("Hi there!<|eot_id|>")


def test_chatml_template():
    out = render_chat(CHATML_TEMPLATE, MESSAGES)
    assert out == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  Hi there!  <|im_end|>\n"
                   "<|im_start|>assistant\n")


def test_trim_and_lstrip_blocks_like_transformers():
    template = ("{% for m in messages %}\n"
                "    {% if m['role'] == 'user' %}\n"
                "U:{{ m['content'] }}\n"
                "    {% endif %}\n"
                "{% endfor %}\n")
    assert render_chat(template, MESSAGES) == "U:  Hi there!  \n"


def test_helpers_tojson_strftime_loopcontrols_generation():
    template = ("{{ messages[1] | tojson }}|{{ strftime_now('%Y') }}|"
                "{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}"
                "{{ m['role'] }}{% endfor %}|"
                "{% generation %}gen{% endgeneration %}")
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "café"}]
    out = render_chat(template, messages)
    assert out == f'{{"role": "assistant", "content": "café"}}|{datetime.datetime.now().year}|user|gen'


def test_raise_exception_becomes_tokenizer_error():
    template = ("{% if messages[0]['role'] != 'user' %}"
                "{{ raise_exception('Conversation must start with user') }}{% endif %}")
    with pytest.raises(TokenizerError, match="Conversation must start with user"):
        render_chat(template, MESSAGES)


def test_syntax_error_names_the_line():
    with pytest.raises(TokenizerError, match="syntax error at line 2"):
        render_chat("ok\n{% for m in messages %}", MESSAGES)


def test_sandbox_refuses_mutation():
    with pytest.raises(TokenizerError, match="SecurityError"):
        render_chat("{{ messages.append(1) }}", MESSAGES)


def test_fallback_template():
    one = [{"role": "user", "content": "hi"}]
    assert render_chat(FALLBACK_CHAT_TEMPLATE, one) == "<|user|>\nhi\n<|assistant|>\n"
    assert render_chat(FALLBACK_CHAT_TEMPLATE, MESSAGES, add_generation_prompt=False) == \
        "<|system|>\nBe brief.\n<|user|>\n  Hi there!  \n"


def test_tokenizer_uses_model_template_and_avoids_double_bos(fixture_meta):
    meta = dict(fixture_meta("bitnet-b158-tiny"))
    tok = from_gguf_metadata(meta)
    assert tok.chat_template is None
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "<|user|>\nhi\n<|assistant|>\n"
    meta["tokenizer.chat_template"] = ("{{ bos_token }}{% for m in messages %}{{ m['content'] }}"
                                       "{{ eos_token }}{% endfor %}")
    tok = from_gguf_metadata(meta)
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "<s>hi</s>"
    ids = tok.encode_chat([{"role": "user", "content": "hi"}])
    assert ids == [1, *tok.encode("hi", add_bos=False), 2]          # one BOS, specials parsed
