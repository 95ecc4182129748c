"""The CLI's own logic in-process, with a scripted model: stdout exactness, streaming, chat history."""

from __future__ import annotations

import io

import pytest
from tritium.core.cli import chat_command, generate_command, main

from tests.engine.fakes import EOS, ScriptedRuntime, fake_model, word


@pytest.fixture
def scripted(monkeypatch):
    """Replace model loading by the fake model; returns the runtime so tests can see what it was fed."""
    script = [word("hello"), ord(" "), word("STO"), word("P"), word(" world"), EOS]
    runtime = ScriptedRuntime(script, n_ctx=512)

    def load(args):
        return fake_model(), runtime

    monkeypatch.setattr(generate_command, "load_model_and_runtime", load)
    monkeypatch.setattr(chat_command, "load_model_and_runtime", load)
    return runtime


@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_generate_stdout_is_exactly_the_text(scripted, capsys, stream):
    code = main(["generate", "--prompt", "hi", "--temperature", "0", *stream])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "hello STOP world"
    assert "finish: stop" in err and "tok/s" in err


def test_generate_stop_flag_and_quiet(scripted, capsys):
    assert main(["generate", "-p", "hi", "--temp", "0", "--stop", "STOP", "-q"]) == 0
    out, err = capsys.readouterr()
    assert out == "hello " and err == ""


def test_generate_max_tokens(scripted, capsys):
    assert main(["generate", "-p", "hi", "--temp", "0", "-n", "2"]) == 0
    assert capsys.readouterr().out == "hello "


@pytest.mark.parametrize(("flags", "named"), [
    (["--top-p", "0"], "--top-p"), (["--temperature", "-1"], "--temperature"),
    (["--repeat-penalty", "0"], "--repeat-penalty"), (["--max-tokens", "0"], "--max-tokens"),
    (["--threads", "0"], "--threads"), (["--n-ctx", "0"], "--n-ctx"),
])
def test_invalid_values_exit_2_naming_the_flag_before_loading_anything(capsys, flags, named):
    assert main(["generate", "-p", "hi", "-m", "/nonexistent/model.gguf", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {named}:") and "Traceback" not in err


def test_prompt_longer_than_context_exits_2(capsys, monkeypatch):
    monkeypatch.setattr(generate_command, "load_model_and_runtime",
                        lambda args: (fake_model(), ScriptedRuntime([EOS], n_ctx=8)))
    assert main(["generate", "-p", "a much too long prompt", "-n", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the context window is 8 tokens") and "Traceback" not in err


def test_chat_keeps_the_conversation_and_quits_on_exit(scripted, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("first\n\nsecond\n/exit\nnever read\n"))
    assert main(["chat", "--temp", "0", "-n", "3", "--system", "be brief"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["hello STO", "P world"]  # 3 tokens each; the script goes on
    prompts = [bytes(t for t in fed if t < 256).decode() for fed in scripted.fed if len(fed) > 1]
    assert len(prompts) == 2
    assert prompts[0] == "<|system|>\nbe brief\n<|user|>\nfirst\n<|assistant|>\n"
    # The second turn re-evaluates only what follows the cached first turn: the reply as the template
    # writes it, and the new message.
    assert prompts[1] == "hello STO\n<|user|>\nsecond\n<|assistant|>\n"
    assert "no chat template" in err


def test_chat_ends_at_end_of_input(scripted, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("only line\n"))
    assert main(["chat", "--temp", "0", "-q"]) == 0
    assert capsys.readouterr().out == "hello STOP world\n"


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "generate" in capsys.readouterr().err


def test_chat_shortens_replies_to_the_context_and_drops_what_cannot_fit(capsys, monkeypatch):
    runtime = ScriptedRuntime([word("hello"), ord(" "), word("!"), EOS], n_ctx=30)
    monkeypatch.setattr(chat_command, "load_model_and_runtime", lambda args: (fake_model(), runtime))
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\nagain\n"))
    assert main(["chat", "--temp", "0", "-n", "10"]) == 0
    out, err = capsys.readouterr()
    # BOS + "<|user|>\nhi\n<|assistant|>\n" is 27 tokens: 3 left for the reply (its EOS never comes).
    assert out == "hello !\n"
    assert "error: the context window is 30 tokens" in err and "dropped" in err
