"""Tokenizers: GGUF SentencePiece and byte-level BPE vocabularies, Hugging Face tokenizer.json, streaming
detokenization and chat templates. Every tokenizer implements `Tokenizer` (see interface.py)."""

from tritium.core.tokenizer.chat_template import FALLBACK_CHAT_TEMPLATE, FALLBACK_TURN_MARKERS, render_chat
from tritium.core.tokenizer.factory import from_gguf_metadata, from_hf_folder
from tritium.core.tokenizer.gguf_vocab import TokenType
from tritium.core.tokenizer.interface import Tokenizer
from tritium.core.tokenizer.stream import StreamDecoder

__all__ = [
    "FALLBACK_CHAT_TEMPLATE",
    "FALLBACK_TURN_MARKERS",
    "StreamDecoder",
    "TokenType",
    "Tokenizer",
    "from_gguf_metadata",
    "from_hf_folder",
    "render_chat",
]
