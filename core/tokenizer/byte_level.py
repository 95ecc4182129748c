"""GPT-2's byte-level alphabet: each of the 256 byte values spelled as one printable character.

Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, 0x7F-0xA0, 0xAD) are moved to
U+0100 onwards in byte order. Byte-level BPE vocabularies (GGUF "gpt2", HF ByteLevel) spell tokens in this
alphabet, e.g. "Ġworld" for b" world".
"""

from __future__ import annotations


def _build() -> tuple[dict[int, str], dict[str, int]]:
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    byte_to_char = {b: chr(b) for b in kept}
    extra = 0
    for b in range(256):
        if b not in byte_to_char:
            byte_to_char[b] = chr(256 + extra)
            extra += 1
    return byte_to_char, {c: b for b, c in byte_to_char.items()}


BYTE_TO_CHAR, CHAR_TO_BYTE = _build()
_ENCODE_TABLE = [BYTE_TO_CHAR[b] for b in range(256)]


def bytes_to_chars(data: bytes) -> str:
    """`data` spelled in the byte-level alphabet (one character per byte)."""
    return "".join(_ENCODE_TABLE[b] for b in data)


def chars_to_bytes(text: str) -> bytes:
    """Inverse of bytes_to_chars. A character outside the alphabet (never in a real byte-level vocabulary)
    contributes its own UTF-8 bytes."""
    out = bytearray()
    for c in text:
        b = CHAR_TO_BYTE.get(c)
        if b is None:
            out += c.encode("utf-8")
        else:
            out.append(b)
    return bytes(out)
