"""CLIP's byte-level BPE tokenizer (the one dino.txt uses), offline.

Text is cleaned as CLIP does (``ftfy.fix_text``, HTML entities unescaped twice, whitespace runs collapsed,
lower-cased), split with CLIP's regular expression, mapped byte -> printable unicode and merged by the BPE
ranks of ``bpe_simple_vocab_16e6.txt.gz``. The vocabulary is read from ``vocab_path``, else
``$DINOBENCH_BPE_VOCAB``, else the copy inside the installed ``open_clip_torch`` package - never downloaded.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import ftfy
import regex
import torch

from dinobench.errors import ConfigError

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2  # the merges CLIP uses (vocabulary: 512 byte symbols + merges + 2 specials = 49408)
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_SPLIT = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                       regex.IGNORECASE)


@lru_cache(maxsize=1)
def byte_symbols() -> dict[int, str]:
    """Byte -> printable unicode character: printable Latin-1 bytes map to themselves, the others to 256+."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table  # insertion order = vocabulary order: the kept bytes first, then the others ascending


def clean(text: str) -> str:
    """CLIP's cleaning: fix mojibake, unescape HTML twice, collapse whitespace, lower-case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


def find_vocab(vocab_path: str | Path | None = None) -> Path:
    """The BPE vocabulary file (see the module docstring); a one-line error naming the ways to provide it."""
    candidates = [vocab_path, os.environ.get("DINOBENCH_BPE_VOCAB")]
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / VOCAB_NAME)
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    raise ConfigError(f"{VOCAB_NAME} not found: pass its path, set DINOBENCH_BPE_VOCAB, or "
                      f"`pip install --no-deps open_clip_torch` (it ships the file)")


class Tokenizer:
    """``encode(text) -> ids`` and ``__call__(texts, context_length) -> LongTensor`` (start/end tokens,
    zero padding, truncation keeping the end token)."""

    def __init__(self, vocab_path: str | Path | None = None) -> None:
        path = find_vocab(vocab_path)
        lines = gzip.open(path).read().decode("utf-8").split("\n")[1:N_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        symbols = list(byte_symbols().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.sot, self.eot = self.encoder[SOT], self.encoder[EOT]
        self._cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}

    def bpe(self, word: str) -> list[str]:
        """The BPE symbols of one pre-token (byte symbols; the last one marked end-of-word)."""
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the best pair, left to right
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no start/end tokens)."""
        table = byte_symbols()
        ids = []
        for piece in _SPLIT.findall(clean(text)):
            ids.extend(self.encoder[s] for s in self.bpe("".join(table[b] for b in piece.encode("utf-8"))))
        return ids

    def __call__(self, texts: str | Sequence[str], context_length: int = 77) -> torch.Tensor:
        """``[len(texts), context_length]`` ids: start, text, end, zeros; over-long texts cut, the end token kept."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > context_length:
                ids = ids[:context_length - 1] + [self.eot]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


@lru_cache(maxsize=4)
def default_tokenizer(vocab_path: str | None = None) -> Tokenizer:
    """A shared :class:`Tokenizer` per vocabulary path (building one reads 49k merges)."""
    return Tokenizer(vocab_path)


def tokenize(texts: str | Sequence[str], context_length: int = 77) -> torch.Tensor:
    """CLIP token ids ``LongTensor [len(texts), context_length]`` of ``texts`` (the default vocabulary)."""
    return default_tokenizer(os.environ.get("DINOBENCH_BPE_VOCAB"))(texts, context_length)
