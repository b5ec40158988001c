"""The Gemma 3 tokenizer, built from a GGUF's metadata with ``tokenizers`` and cached.

The GGUF stores a SentencePiece BPE vocabulary (``tokenizer.ggml.tokens``, ``token_type``)
without merges.  We build the same tokenizer as transformers does from a GGUF:

- a token made only of spaces ("  ", ids 138-167) is spelled "▁▁" (the normalizer turns
  every space into "▁", so a real space in the vocabulary would never match);
- the merges are every split of a token into two tokens, ranked by the token's position in
  the file (Gemma's scores do not follow the merge order), longer left part first;
- BPE with byte fallback (``<0xNN>`` tokens) and ``<unk>`` as the unknown token;
- CONTROL tokens (type 3: ``<bos>``, ``<unk>``, ``<start_of_turn>``, ...) are special and
  USER_DEFINED ones (type 4: "\\n\\n", "<table>", ...) added tokens, both matched whole in text;
- decoding turns "▁" back into spaces and fuses byte tokens into UTF-8.

Building takes ~10 s, so the result is saved as ``cache_dir()/tokenizers/<sha256[:16]>/tokenizer.json``.
``encode`` prepends BOS (id 2) unless ``add_bos=False``.
"""
from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Iterable

from .errors import ModelError
from .gguf_loader import (check_architecture, check_file, file_sha256, forget_gguf, metadata, open_gguf,
                          staged_dir)
from .paths import cache_dir

CACHE_VERSION = 1
CONTROL, USER_DEFINED = 3, 4
SPACE = "\u2581"
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def build_tokenizer_json(tokens: list[str], token_types: list[int], unk: str = "<unk>") -> str:
    """The tokenizer.json text for a SentencePiece-BPE vocabulary as a GGUF stores it."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    spelled = [SPACE * len(t) if " " in t and not t.strip() else t for t in tokens]
    vocab = {t: i for i, t in enumerate(spelled)}
    merges = []
    for t in spelled:                      # by position in the file; longer left part first
        for k in range(len(t) - 1, 0, -1):
            left, right = t[:k], t[k:]
            if left in vocab and right in vocab:
                merges.append((left, right))
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", SPACE)
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    types = list(token_types)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t, ty in zip(tokens, types) if ty == CONTROL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False)
                    for t, ty in zip(tokens, types) if ty == USER_DEFINED and t in vocab])
    return tok.to_str()


def _piece_bytes(token: str | None) -> bytes:
    if token is None:
        return b""
    m = _BYTE_TOKEN.match(token)
    if m:
        return bytes([int(m.group(1), 16)])
    return token.replace(SPACE, " ").encode("utf-8")


class StreamDecoder:
    """Turns generated ids into text as they come, never splitting a multi-byte character."""

    def __init__(self, tokenizer: "Tokenizer"):
        self._tok = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def step(self, token_id: int) -> str:
        """The new text this token completes ('' while a character's bytes are still arriving)."""
        return self._utf8.decode(self._tok.piece_bytes(token_id))

    def flush(self) -> str:
        """Whatever is left at the end (a replacement character for an unfinished byte sequence)."""
        return self._utf8.decode(b"", final=True)


class Tokenizer:
    """``encode(text) -> ids`` (BOS first), ``decode(ids) -> text``, and a streaming decoder."""

    def __init__(self, tokenizer_json: str | Path, meta: dict):
        from tokenizers import Tokenizer as HFTokenizer
        self._tok = HFTokenizer.from_file(str(tokenizer_json))
        self.bos_id: int = meta["bos_id"]
        self.eos_id: int = meta["eos_id"]
        self.end_of_turn_id: int | None = meta.get("end_of_turn_id")
        self.vocab_size: int = meta["vocab_size"]
        self._pieces: list[bytes] | None = None

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self.bos_id] + ids if add_bos else ids

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """The text of ``ids``; special tokens appear as their text unless ``skip_special``."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def token(self, token_id: int) -> str | None:
        """The vocabulary entry of an id (``"▁the"``, ``"<0x0A>"``, ``"<end_of_turn>"``)."""
        return self._tok.id_to_token(int(token_id))

    def piece_bytes(self, token_id: int) -> bytes:
        """The bytes one token contributes to the text (a byte-fallback token is one raw byte)."""
        if self._pieces is None:
            self._pieces = [_piece_bytes(self._tok.id_to_token(i)) for i in range(self.vocab_size)]
        if not 0 <= token_id < self.vocab_size:
            raise ModelError(f"token id {token_id} is outside the vocabulary (0..{self.vocab_size - 1})")
        return self._pieces[token_id]

    def decode_piece(self, token_id: int) -> str:
        """One token's text on its own (a lone byte of a multi-byte character shows as U+FFFD)."""
        return self.piece_bytes(token_id).decode("utf-8", errors="replace")

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)


def _cache_path(sha256: str) -> Path:
    return cache_dir() / "tokenizers" / sha256[:16]


def _read_meta(dest: Path) -> dict | None:
    try:
        meta = json.loads((dest / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != CACHE_VERSION or not (dest / "tokenizer.json").is_file():
        return None
    return meta


def tokenizer_cached(sha256: str) -> bool:
    return _read_meta(_cache_path(sha256)) is not None


def _build(path: Path, dest: Path) -> None:
    try:
        _write_cache(open_gguf(path), path, dest)
    finally:
        forget_gguf()


def _write_cache(reader, path: Path, dest: Path) -> None:
    check_architecture(reader, path)
    field = reader.fields.get("tokenizer.ggml.tokens")
    type_field = reader.fields.get("tokenizer.ggml.token_type")
    if field is None or type_field is None:
        raise ModelError(f"{path}: the GGUF has no tokenizer (tokenizer.ggml.tokens / token_type missing)",
                         "use a GGUF converted with its tokenizer, as llama.cpp's convert_hf_to_gguf.py does")
    model = metadata(reader, "tokenizer.ggml.model")
    if model != "llama":
        raise ModelError(f"{path}: tokenizer.ggml.model is {model!r}; gemforge reads SentencePiece ('llama') "
                         "vocabularies, as Gemma 3 GGUFs have")
    tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
    types = [int(type_field.parts[i][0]) for i in type_field.data]
    if len(types) != len(tokens):
        raise ModelError(f"{path}: tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens")
    unk_id = metadata(reader, "tokenizer.ggml.unknown_token_id", 3)
    meta = {"version": CACHE_VERSION, "vocab_size": len(tokens),
            "bos_id": metadata(reader, "tokenizer.ggml.bos_token_id", 2),
            "eos_id": metadata(reader, "tokenizer.ggml.eos_token_id", 1),
            "end_of_turn_id": tokens.index("<end_of_turn>") if "<end_of_turn>" in tokens else None}
    text = build_tokenizer_json(tokens, types, unk=tokens[unk_id])
    with staged_dir(dest, "tokenizer cache", "free disk space, or set GEMFORGE_CACHE_DIR to a writable folder") as tmp:
        (tmp / "tokenizer.json").write_text(text)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer of a Gemma 3 GGUF, built on first use and cached by the file's sha256."""
    path = check_file(Path(path))
    dest = _cache_path(file_sha256(path))
    meta = _read_meta(dest)
    if meta is None:
        _build(path, dest)
        meta = _read_meta(dest)
    return Tokenizer(dest / "tokenizer.json", meta)
