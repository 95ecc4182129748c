"""The accuracy report measures on the held-out part of the shipped text, never on training text."""

import re

from tritium.core.quantize.accuracy import HELD_OUT_FROM, SAMPLE_TEXT, sample_text


def test_held_out_offset_is_the_one_the_text_readme_states():
    readme = (SAMPLE_TEXT.parent / "README.md").read_text()
    stated = int(re.search(r"byte ([\d,]+) on", readme).group(1).replace(",", ""))
    assert HELD_OUT_FROM == stated
    raw = SAMPLE_TEXT.read_bytes()
    assert raw[HELD_OUT_FROM - 2:HELD_OUT_FROM] == b"\n\n"  # a paragraph boundary
    assert sample_text().startswith(raw[HELD_OUT_FROM:HELD_OUT_FROM + 40].decode())
