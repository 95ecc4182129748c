"""The quantizer plugin killed (SIGKILL) in the middle of a conversion: the supervisor restarts it, the
tensor in flight is sent again to the new process, and the output is byte-identical to an undisturbed
run. A plugin that dies twice on the same tensor ends the run with a clear error and no output."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from tritium.core.quantize import plugin_quantizer
from tritium.core.quantize.convert import quantize_model
from tritium.core.quantize.errors import QuantizeError
from tritium.core.quantize.options import QuantizeOptions
from tritium.core.quantize.plugin_quantizer import PluginQuantizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import make_hf_folder  # noqa: E402


def _convert(src, dst, quantizer, quant_type):
    return quantize_model(src, dst, QuantizeOptions(quant_type), quantizer=quantizer, progress=False,
                          evaluate=False)


def _kill_in_flight(monkeypatch, at: set[int]) -> list[str]:
    """Make the session SIGKILL the plugin right after it sent request number n (1-based) for n in `at`,
    before the answer is read: the tensor is in flight when the process dies. Returns the names sent."""
    sent: list[str] = []
    real_send = plugin_quantizer._Stream.send

    def send(self, req):  # noqa: ANN001, ANN202
        sent.append(req.name)
        if len(sent) not in at:
            return real_send(self, req)
        self._q.put(req)
        os.kill(self.inst.pid, signal.SIGKILL)
        return next(self._responses)

    monkeypatch.setattr(plugin_quantizer._Stream, "send", send)
    return sent


@pytest.fixture(scope="module")
def online_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "online"
    make_hf_folder(folder, "online", act="silu", seed=7)
    return folder


# tq1_0 changes the plugin's default type (i2_s): a restarted process that was not configured again
# would answer with I2_S bytes
def test_killed_plugin_restarts_and_output_is_byte_identical(online_model, tmp_path, monkeypatch):
    calm, killed = tmp_path / "calm" / "model.gguf", tmp_path / "killed" / "model.gguf"  # same general.name
    calm.parent.mkdir()
    killed.parent.mkdir()
    with PluginQuantizer("ternary") as q:
        _convert(online_model, calm, q, "tq1_0")
        pid, restarts = q.pid, q.restarts
        sent = _kill_in_flight(monkeypatch, at={5})
        rep = _convert(online_model, killed, q, "tq1_0")
        assert q.restarts == restarts + 1 and q.pid != pid
    assert killed.read_bytes() == calm.read_bytes()
    assert sent[4] == sent[5]  # the tensor in flight was sent again, to the new process
    assert len(sent) == len({r.name for r in rep.tensors if r.rmse is not None}) + 1


def test_plugin_dying_twice_on_one_tensor_fails_without_output(online_model, tmp_path, monkeypatch):
    with PluginQuantizer("ternary") as q:
        sent = _kill_in_flight(monkeypatch, at={3, 4})
        with pytest.raises(QuantizeError, match=r"quantizer plugin 'ternary', tensor '.*': [A-Z_]+"):
            _convert(online_model, tmp_path / "x.gguf", q, "tq2_0")
    assert sent[2] == sent[3]
    assert list(tmp_path.iterdir()) == []
