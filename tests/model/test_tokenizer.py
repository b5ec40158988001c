"""Our tokenizer (built from the GGUF's metadata) against transformers' GGUF tokenizer."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.model


def test_fixture_covers_the_traps(tokenizer_cases):
    texts = [c["text"] for c in tokenizer_cases]
    assert len(texts) >= 30
    for must in ("", "   ", "\t", "\n\n\n", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<unk>"):
        assert must in texts


def test_encode_matches_transformers(tokenizer, tokenizer_cases):
    wrong = [(c["text"], tokenizer.encode(c["text"]), c["ids"]) for c in tokenizer_cases
             if tokenizer.encode(c["text"]) != c["ids"]]
    assert not wrong, f"{len(wrong)} strings differ; first: {wrong[0]}"


def test_add_bos(tokenizer, tokenizer_cases):
    for c in tokenizer_cases:
        assert tokenizer.encode(c["text"], add_bos=False) == c["ids"][1:], c["text"]


def test_golden_facts(tokenizer):
    assert tokenizer.encode("The capital of France is") == [2, 818, 5279, 529, 7001, 563]
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.end_of_turn_id) == (2, 1, 106)
    assert tokenizer.vocab_size == 262144
    assert tokenizer.encode("<start_of_turn>user\n", add_bos=False)[0] == 105
    assert tokenizer.encode("<end_of_turn>", add_bos=False) == [106]
    assert tokenizer.decode_piece(506) == " the"
    assert tokenizer.token(506) == "\u2581the"


def test_decode_round_trips(tokenizer, tokenizer_cases):
    for c in tokenizer_cases:
        got = tokenizer.decode(c["ids"][1:])
        assert got == c["decoded"], c["text"]
        if "\u2581" not in c["text"]:           # "▁" is the tokenizer's space: it decodes as " "
            assert got == c["text"]


def test_stream_decoder_matches_decode(tokenizer, tokenizer_cases):
    for c in tokenizer_cases:
        dec = tokenizer.stream_decoder()
        pieces = [dec.step(i) for i in c["ids"][1:]] + [dec.flush()]
        assert "".join(pieces) == c["decoded"], c["text"]
        if "\ufffd" not in c["text"]:
            assert not any("\ufffd" in p for p in pieces), f"a piece split a character: {pieces}"


def test_stream_decoder_holds_partial_characters(tokenizer):
    text = "\U0001d518\U0001d52b \U00010348"                     # rare characters: byte-fallback tokens
    ids = tokenizer.encode(text, add_bos=False)
    assert any(tokenizer.token(i).startswith("<0x") for i in ids)
    dec = tokenizer.stream_decoder()
    pieces = [dec.step(i) for i in ids]
    assert "".join(pieces) == text
    assert "" in pieces                 # the first bytes of a character give no text yet


def test_second_load_uses_the_cache(model_path, tokenizer, monkeypatch):
    from gemforge.runtime import tokenizer as tk

    def no_gguf(path):
        raise AssertionError("the cached tokenizer should not open the GGUF")
    monkeypatch.setattr(tk, "open_gguf", no_gguf)
    again = tk.load_tokenizer(model_path)
    assert again.encode("hello  world") == tokenizer.encode("hello  world")
