"""Pre-tokenizer regexes of byte-level BPE vocabularies, chosen by `tokenizer.ggml.pre` as llama.cpp does.

Text is split into words before BPE runs; merges never cross a word boundary. llama.cpp applies a list of
regexes one after another: each splits every current piece into its matches *and* the unmatched gaps
between them (a lookahead cannot see past the end of the piece it runs on). The patterns are llama.cpp's
(llama-vocab.cpp, `llm_tokenizer_bpe`), run with the `regex` package, which understands \\p{L}/\\p{N}.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex
from tritium.core.errors import TokenizerError

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
           r"|\s+(?!\S)|\s+")
_QWEN2 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")

_DEFAULT = (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")

# tokenizer.ggml.pre -> regex list. "" (absent) is llama.cpp's fallback to "default".
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "": _DEFAULT,
    "default": _DEFAULT,
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                     "lfm2", "dbrx", "smaug-bpe"), (_LLAMA3,)),
    **dict.fromkeys(("gpt-2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "mpt", "olmo",
                     "jais", "roberta-bpe", "jina-v1-en", "jina-v2-code", "exaone4"), (_GPT2,)),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"), (_QWEN2,)),
    **dict.fromkeys(("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"),
                    (r"\p{N}", _GPT2)),
}


@dataclass(frozen=True)
class PreTokenizer:
    """Splits text into BPE words with a sequence of regexes (see module doc)."""

    name: str
    patterns: tuple[regex.Pattern, ...]

    def split(self, text: str) -> list[str]:
        """The words of `text`, in order; their concatenation is `text`."""
        spans = [(0, len(text))] if text else []
        for pattern in self.patterns:
            cut: list[tuple[int, int]] = []
            for start, end in spans:
                pos = start
                for m in pattern.finditer(text, start, end):
                    if m.end() == m.start():
                        continue
                    if m.start() > pos:
                        cut.append((pos, m.start()))
                    cut.append((m.start(), m.end()))
                    pos = m.end()
                if pos < end:
                    cut.append((pos, end))
            spans = cut
        return [text[a:b] for a, b in spans]


def pre_tokenizer_for(pre: str) -> PreTokenizer:
    """The pre-tokenizer `tokenizer.ggml.pre` names; TokenizerError for one this engine does not know."""
    patterns = PRE_TOKENIZERS.get(pre)
    if patterns is None:
        known = ", ".join(sorted(k for k in PRE_TOKENIZERS if k))
        raise TokenizerError(f"tokenizer.ggml.pre: unsupported pre-tokenizer {pre!r} (supported: {known})")
    return PreTokenizer(pre or "default", tuple(regex.compile(p) for p in patterns))
