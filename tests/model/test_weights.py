"""GGUF -> device-format conversion and its on-disk cache, on tiny GGUFs written here."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFReader
from gguf.quants import dequantize

from gemforge.runtime import formats, gguf_loader
from gemforge.runtime.gguf_loader import file_sha256, load_weights, tensor_shapes

from .tiny_gguf import TINY, write_config, write_gguf


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMFORGE_CACHE_DIR", str(tmp_path / "cache"))
    return write_gguf(tmp_path / "tiny.gguf"), write_config(tmp_path / "configs")


def gguf_fp32(path) -> dict[str, np.ndarray]:
    """Every tensor dequantized by the gguf package, [N, K] / (n,)."""
    out = {}
    for t in GGUFReader(path).tensors:
        out[t.name] = dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
    return out


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_conversion_is_pack_of_the_dequantized_tensor(tiny, fmt):
    path, configs = tiny
    store = load_weights(path, fmt, configs=configs)
    assert store.config.name == TINY["name"] and store.fmt == fmt
    assert store.names == list(tensor_shapes(store.config))
    ref = gguf_fp32(path)
    types = set()
    for name in store.names:
        types.add(store.gguf_type(name))
        if ref[name].ndim == 1:
            v = store.vector(name)
            assert v.dtype == np.float32 and np.array_equal(v, ref[name]), name   # stored 1 + w, used as is
            continue
        words, N, K = store.matrix(name)
        assert (N, K) == ref[name].shape and words.dtype == np.uint32
        assert np.array_equal(words, formats.pack(ref[name], fmt)), name
        assert np.array_equal(store.fp32(name), formats.unpack(words, fmt, N, K)), name
    assert {"Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "F16", "F32", "BF16"} <= types


def test_conversion_in_slices_equals_whole(tiny, monkeypatch):
    """Rows are converted a few at a time; quants and scales land where formats.pack puts them."""
    path, configs = tiny
    monkeypatch.setattr(gguf_loader, "SLICE_ELEMENTS", 64 * 6)       # 6 rows per slice for K = 64
    for fmt in ("q4_0", "q8_0", "f16"):
        words, N, K = load_weights(path, fmt, configs=configs).matrix("token_embd.weight")
        whole = formats.pack(gguf_fp32(path)["token_embd.weight"], fmt)
        assert np.array_equal(words, whole), fmt


def test_f32_store_is_the_gguf_dequantization(tiny):
    path, configs = tiny
    store = load_weights(path, "f32", configs=configs)
    ref = gguf_fp32(path)
    for name in store.names:
        assert np.array_equal(store.fp32(name), ref[name]), name


def test_second_load_is_memory_mapped_from_the_cache(tiny, monkeypatch):
    path, configs = tiny
    first = load_weights(path, "q8_0", configs=configs)

    def no_gguf(p):
        raise AssertionError("a cached load should not open the GGUF")
    monkeypatch.setattr(gguf_loader, "open_gguf", no_gguf)
    second = load_weights(path, "q8_0", configs=configs)
    assert second.directory == first.directory
    assert second.directory.name == f"{file_sha256(path)[:16]}-q8_0"
    words, _, _ = second.matrix("blk.1.ffn_up.weight")
    assert isinstance(words, np.memmap)


def test_interrupted_conversion_leaves_no_usable_cache(tiny, monkeypatch):
    path, configs = tiny
    real = gguf_loader._convert_matrix
    calls = []

    def dies_on_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(gguf_loader, "_convert_matrix", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        load_weights(path, "q4_0", configs=configs)
    root = gguf_loader.cache_dir() / "weights"
    assert list(root.iterdir()) == []                 # neither the final folder nor a partial one
    monkeypatch.setattr(gguf_loader, "_convert_matrix", real)
    store = load_weights(path, "q4_0", configs=configs)
    assert len(store.names) == len(tensor_shapes(store.config))


def test_damaged_cache_is_rebuilt(tiny, capsys):
    path, configs = tiny
    store = load_weights(path, "f16", configs=configs)
    (store.directory / "blk.0.ffn_down.weight.npy").unlink()
    again = load_weights(path, "f16", configs=configs)
    assert "damaged" in capsys.readouterr().err
    words, N, K = again.matrix("blk.0.ffn_down.weight")
    assert np.array_equal(words, formats.pack(gguf_fp32(path)["blk.0.ffn_down.weight"], "f16"))


def test_file_hash_is_remembered_until_the_file_changes(tmp_path, monkeypatch):
    import hashlib
    import os
    monkeypatch.setenv("GEMFORGE_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "data.bin"
    f.write_bytes(b"abc")
    assert file_sha256(f) == hashlib.sha256(b"abc").hexdigest()
    f.write_bytes(b"abd")
    os.utime(f, ns=(1, 1))
    assert file_sha256(f) == hashlib.sha256(b"abd").hexdigest()


def test_unwritable_cache_is_one_clear_error(tmp_path, monkeypatch):
    from gemforge.runtime.errors import ModelError
    path = write_gguf(tmp_path / "tiny.gguf")
    blocker = tmp_path / "cache"
    monkeypatch.setenv("GEMFORGE_CACHE_DIR", str(blocker))
    blocker.mkdir()
    (blocker / "weights").write_text("a file where the cache folder should be")
    with pytest.raises(ModelError, match="cannot write the weight cache .* GEMFORGE_CACHE_DIR"):
        load_weights(path, "q8_0", configs=write_config(tmp_path / "configs"))
