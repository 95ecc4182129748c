"""A quantizer plugin from outside the repository, found through $TRITIUM_PLUGIN_PATH and used by
`tritium quantize --plugin` without any change to core code."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
from tritium.core.formats.gguf_reader import read_gguf
from tritium.core.model.loader import load_model
from tritium.core.quantize.cli import quantize_main
from tritium.sdk.packaging import write_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import make_hf_folder  # noqa: E402

PLUGIN = textwrap.dedent('''
    """A third-party quantizer: BitNet projections -> Q8_0 (gguf.quants), nothing else."""
    import re

    import grpc
    import numpy as np
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import quantize
    from tritium.protos.tritium.plugin.v1 import common_pb2, quantizer_pb2
    from tritium.sdk import QuantizerPlugin, serve, shm
    from tritium.sdk.config import ConfigError

    LINEAR = re.compile(r"^blk\\.\\d+\\.(attn_[qkv]|attn_output|ffn_gate|ffn_up|ffn_down)\\.weight$")


    class Q8Quantizer(QuantizerPlugin):
        def configure(self, config, validate_only):
            if config.quant_type != common_pb2.QUANT_TYPE_Q8_0:
                raise ConfigError("q8only makes only QUANT_TYPE_Q8_0")
            return config

        def CanQuantize(self, request, context):
            if not LINEAR.match(request.tensor_name):
                return quantizer_pb2.CanQuantizeResponse(ok=False, reason="not a projection")
            return quantizer_pb2.CanQuantizeResponse(ok=True, quant_type=common_pb2.QUANT_TYPE_Q8_0)

        def Quantize(self, request_iterator, context):
            cache = shm.SegmentCache()
            for req in request_iterator:
                x = shm.read_tensor(req.input, cache)
                q = np.ascontiguousarray(quantize(x, GGMLQuantizationType.Q8_0)).reshape(-1).view(np.uint8)
                yield quantizer_pb2.QuantizeResponse(tensor=quantizer_pb2.QuantizedTensor(
                    name=req.name, quant_type=common_pb2.QUANT_TYPE_Q8_0, shape=list(req.input.shape),
                    data=shm.inline_handle(q)), mse=0.0)


    if __name__ == "__main__":
        serve(Q8Quantizer(), "quantizer", "q8only", "1.0.0")
''')


def test_third_party_quantizer_from_plugin_path(tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "plugins" / "q8only"
    pkg.mkdir(parents=True)
    (pkg / "q8only_plugin.py").write_text(PLUGIN)
    write_manifest(pkg, name="q8only", kind="quantizer", version="1.0.0",
                   entry=["{python}", "{root}/q8only_plugin.py"])
    monkeypatch.setenv("TRITIUM_PLUGIN_PATH", str(tmp_path / "plugins"))
    src = tmp_path / "hf"
    make_hf_folder(src, "online")
    dst = tmp_path / "q8.gguf"
    rc = quantize_main(["--in", str(src), "--out", str(dst), "--plugin", "q8only", "--quant-type", "q8_0",
                        "--no-progress", "--no-eval"])
    assert rc == 0, capsys.readouterr().err
    f = read_gguf(dst)
    assert f.tensors["blk.1.ffn_down.weight"].type.name == "Q8_0"
    assert f.metadata["tritium.quantize.quant_type"] == "q8_0"
    m = load_model(dst)  # Tritium serves it: Q8_0 linears as dense weights
    assert m.config.act_quant == "none"
    assert np.isfinite(m.weights.layers[0].wq.dequantize()).all()
