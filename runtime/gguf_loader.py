"""Gemma 3 weights from a GGUF file, converted once to a device format and cached on disk.

    store = load_weights("gemma-3-270m-q4_k_m.gguf", "q8_0")
    store.config                      # ModelConfig, checked against configs/models/*.yaml
    words, N, K = store.matrix("blk.0.attn_q.weight")   # uint32 words in formats.pack layout, [N, K]
    store.vector("blk.0.attn_norm.weight")              # fp32, GGUF's (1 + w) as stored
    store.fp32("blk.0.attn_q.weight")                   # what the device computes with, fp32 [N, K]

The GGUF is read with the ``gguf`` package.  Each tensor is dequantized (any format
``gguf.quants.dequantize`` knows: F32, F16, BF16, Q4_0..Q8_0, the K-quants, ...) a slice
of rows at a time and packed into the chosen format, so the peak host memory is a small
multiple of one slice, not of the model.  Norm weights stay fp32.  The result is cached in
``cache_dir()/weights/<sha256[:16]>-<fmt>/`` (one .npy per tensor and ``index.json``),
built in a temporary folder that is renamed into place only when complete; later loads
memory-map the .npy files without opening the GGUF.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import formats
from .config import ModelConfig, model_configs
from .errors import ModelError
from .paths import cache_dir, configs_dir
from .progress import Progress

ARCH = "gemma3"
CACHE_VERSION = 1                 # bump when the conversion or the cache layout changes
SLICE_ELEMENTS = 1 << 23          # rows are converted in slices of about this many weights (32 MiB fp32)

# GGUF metadata key (after "gemma3.") -> ModelConfig field it must equal
HPARAMS = {
    "block_count": "layers",
    "embedding_length": "hidden",
    "feed_forward_length": "ffn",
    "context_length": "context",
    "attention.head_count": "n_heads",
    "attention.head_count_kv": "n_kv_heads",
    "attention.key_length": "head_dim",
    "attention.value_length": "head_dim",
    "attention.sliding_window": "window",
    "attention.layer_norm_rms_epsilon": "eps",
    "rope.freq_base": "rope_global_base",
    "rope.scaling.factor": "rope_global_scale",
}
FLOAT_FIELDS = {"eps", "rope_global_base", "rope_global_scale"}


def tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Gemma 3 text model: matrices as [N, K] (K = inputs), vectors as (n,)."""
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (cfg.vocab, cfg.hidden),
                                          "output_norm.weight": (cfg.hidden,)}
    H, F, D = cfg.hidden, cfg.ffn, cfg.head_dim
    for i in range(cfg.layers):
        p = f"blk.{i}."
        shapes.update({
            p + "attn_norm.weight": (H,), p + "attn_q.weight": (cfg.q_dim, H), p + "attn_k.weight": (cfg.kv_dim, H),
            p + "attn_v.weight": (cfg.kv_dim, H), p + "attn_q_norm.weight": (D,), p + "attn_k_norm.weight": (D,),
            p + "attn_output.weight": (H, cfg.q_dim), p + "post_attention_norm.weight": (H,),
            p + "ffn_norm.weight": (H,), p + "ffn_gate.weight": (F, H), p + "ffn_up.weight": (F, H),
            p + "ffn_down.weight": (H, F), p + "post_ffw_norm.weight": (H,)})
    return shapes


# -- file identity ----------------------------------------------------------------------------

def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def file_sha256(path: Path, progress_label: str | None = None) -> str:
    """sha256 of a file, remembered in the cache by (path, size, mtime) so it is computed once."""
    path = Path(path).resolve()
    st = path.stat()
    memo_path = cache_dir() / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    hit = memo.get(str(path))
    if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
        return hit["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f, Progress(progress_label or f"hashing {path.name}", st.st_size, "MiB") as bar:
        while block := f.read(1 << 22):
            h.update(block)
            bar.advance(len(block))
    digest = h.hexdigest()
    memo[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(memo_path, json.dumps(memo, indent=1))
    return digest


# -- reading the GGUF -------------------------------------------------------------------------

# The last GGUFReader opened, by (path, size, mtime): parsing the vocabulary takes ~10 s and the
# reader holds ~650 MB, so it is kept only between building the weight cache and the tokenizer cache.
_READER: dict = {}


def forget_gguf() -> None:
    """Drop the kept GGUFReader (once every cache made from it exists)."""
    _READER.clear()


def check_file(path: Path) -> Path:
    """The path of a readable, non-empty file that starts like a GGUF, or one clear ModelError."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"model file {path} does not exist",
                         "give the path of a Gemma 3 .gguf file with --model, or leave --model out for the default")
    if not path.is_file():
        raise ModelError(f"model path {path} is not a file", "give the path of a Gemma 3 .gguf file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror}") from None
    if len(head) == 0:
        raise ModelError(f"model file {path} is empty", "re-download or re-assemble the model")
    if head[:4] != b"GGUF":
        raise ModelError(f"{path} is not a GGUF file (it starts with {head[:4]!r}, not b'GGUF')",
                         "give the path of a Gemma 3 .gguf file")
    if len(head) < 8:
        raise ModelError(f"GGUF file {path} is truncated ({len(head)} bytes)", "re-download or re-assemble the model")
    return path


def open_gguf(path: Path):
    """A ``gguf.GGUFReader`` for a checked file, or one clear ModelError."""
    from gguf import GGUFReader
    path = check_file(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _READER:
        return _READER[key]
    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError, struct.error) as e:
        raise ModelError(f"GGUF file {path} is truncated or corrupt ({type(e).__name__}: {e})",
                         "re-download or re-assemble the model") from None
    size = st.st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise ModelError(f"GGUF file {path} is truncated: tensor '{t.name}' ends at byte "
                             f"{t.data_offset + t.n_bytes}, the file has {size}", "re-download or re-assemble the model")
    _READER.clear()
    _READER[key] = reader
    return reader


def metadata(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    return value.item() if isinstance(value, np.generic) else value


def check_architecture(reader, path: Path) -> None:
    arch = metadata(reader, "general.architecture")
    if arch != ARCH:
        raise ModelError(f"{path}: the GGUF's architecture is {arch!r}, not '{ARCH}'",
                         "gemforge runs Gemma 3 text models (general.architecture = gemma3)")


def read_hparams(reader, path: Path) -> dict:
    """The ``gemma3.*`` hyper-parameters the config is checked against (absent keys left out)."""
    check_architecture(reader, path)
    out = {}
    for key in HPARAMS:
        v = metadata(reader, f"{ARCH}.{key}")
        if v is not None:
            out[key] = v
    for key in ("block_count", "embedding_length"):
        if key not in out:
            raise ModelError(f"{path}: metadata '{ARCH}.{key}' is missing", "is this a complete Gemma 3 GGUF?")
    return out


def config_from_hparams(hp: dict, path: Path, configs: Path | None = None) -> ModelConfig:
    """The config with the GGUF's layer count and width; every other hyper-parameter must agree with it."""
    cfgs = model_configs(configs)
    match = [c for c in cfgs.values() if c.layers == hp["block_count"] and c.hidden == hp["embedding_length"]]
    if not match:
        known = ", ".join(f"{c.name} ({c.layers} layers, hidden {c.hidden})" for c in cfgs.values())
        raise ModelError(f"{path}: no model config for a Gemma 3 with {ARCH}.block_count = {hp['block_count']} "
                         f"and {ARCH}.embedding_length = {hp['embedding_length']}",
                         f"known: {known}; add a configs/models/*.yaml for it")
    cfg = match[0]
    where = (Path(configs) if configs else configs_dir() / "models") / f"{cfg.name}.yaml"
    for key, field in HPARAMS.items():
        if key not in hp:
            continue
        have, want = hp[key], getattr(cfg, field)
        same = abs(float(have) - want) <= 1e-6 * abs(want) if field in FLOAT_FIELDS else have == want
        if not same:
            raise ModelError(f"{path}: metadata {ARCH}.{key} = {have!r} but {where} says {field}: {want!r}",
                             "the file is not the model this config describes; fix the config or use another file")
    return cfg


def _matrix_shape(t) -> tuple[int, ...]:
    """GGUF lists dimensions innermost first (ne order); ours are outermost first."""
    return tuple(int(n) for n in reversed(t.shape.tolist()))


def check_tensors(reader, cfg: ModelConfig, path: Path) -> dict:
    """name -> gguf tensor for every tensor the model needs, with the right shape."""
    have = {t.name: t for t in reader.tensors}
    want = tensor_shapes(cfg)
    for name, shape in want.items():
        t = have.get(name)
        if t is None:
            raise ModelError(f"{path}: tensor '{name}' is missing",
                             f"a {cfg.name} GGUF has {len(want)} tensors; is this a complete Gemma 3 text model?")
        got = _matrix_shape(t)
        if got != shape:
            raise ModelError(f"{path}: tensor '{name}' has shape {list(got)}, {cfg.name} needs {list(shape)}")
    return {name: have[name] for name in want}


# -- conversion ---------------------------------------------------------------------------------

def _dequantize(t, rows: slice, path: Path) -> np.ndarray:
    from gguf.quants import dequantize
    try:
        return np.asarray(dequantize(t.data[rows], t.tensor_type), dtype=np.float32)
    except NotImplementedError:
        raise ModelError(f"{path}: tensor '{t.name}' is stored as {t.tensor_type.name}, which the gguf package "
                         "cannot dequantize", "convert the model to Q8_0, Q4_K_M or F16 first") from None


def _convert_matrix(t, fmt: str, N: int, K: int, out: Path, path: Path) -> None:
    """Dequantize and pack ``t`` a slice of rows at a time into an .npy of uint32 words."""
    total = formats.packed_words(fmt, N, K)
    qwords = formats.scale_offset(fmt, N, K) or total        # words of quants (all of it without scales)
    words = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint32, shape=(total,))
    step = max(2, SLICE_ELEMENTS // max(K, 1) // 2 * 2)    # even: a slice's fp16 scales fill whole words
    for r0 in range(0, N, step):
        r1 = min(N, r0 + step)
        packed = formats.pack(_dequantize(t, slice(r0, r1), path).reshape(r1 - r0, K), fmt)
        sq = formats.scale_offset(fmt, r1 - r0, K) or packed.size
        words[qwords * r0 // N:qwords * r1 // N] = packed[:sq]
        if sq < packed.size:
            ns = total - qwords
            words[qwords + ns * r0 // N:qwords + ns * r1 // N] = packed[sq:]
    words.flush()
    del words


@contextmanager
def staged_dir(dest: Path, what: str, hint: str):
    """A fresh directory to fill, renamed to ``dest`` (replacing it) only when the block completes.

    Partial directories of processes that died are removed first; an OSError becomes one ModelError
    naming ``what`` and ``dest``, with ``hint``; nothing half-written is left behind."""
    root = dest.parent
    tmp = root / f".{dest.name}.partial-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(root)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        yield tmp
        if dest.exists():                      # a stale or damaged cache: replace it
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except OSError as e:
        raise ModelError(f"cannot write the {what} {dest}: {e.strerror or e}", hint) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_partials(root: Path) -> None:
    for d in root.glob(".*.partial-*"):
        try:
            pid = int(d.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def convert(path: Path, fmt: str, dest: Path, sha256: str, configs: Path | None = None) -> None:
    """Write the converted cache for ``path`` into ``dest``, which appears only when complete."""
    reader = open_gguf(path)
    hp = read_hparams(reader, path)
    cfg = config_from_hparams(hp, path, configs)
    tensors = check_tensors(reader, cfg, path)
    index = {"version": CACHE_VERSION, "source": str(path), "sha256": sha256, "fmt": fmt, "hparams": hp,
             "tensors": {}}
    with staged_dir(dest, "weight cache",
                    "free disk space, or set GEMFORGE_CACHE_DIR to a writable folder with room") as tmp:
        with Progress(f"converting {path.name} to {fmt}", len(tensors), "tensors") as bar:
            for name, t in tensors.items():
                shape = _matrix_shape(t)
                file = f"{name}.npy"
                if len(shape) == 2:
                    _convert_matrix(t, fmt, *shape, tmp / file, path)
                else:
                    np.save(tmp / file, _dequantize(t, slice(None), path).reshape(shape))
                index["tensors"][name] = {"shape": list(shape), "file": file, "gguf_type": t.tensor_type.name}
                bar.advance()
        (tmp / "index.json").write_text(json.dumps(index, indent=1))
    from .tokenizer import tokenizer_cached
    if tokenizer_cached(sha256):               # else the tokenizer is built next, from the same reader
        forget_gguf()


# -- the store ----------------------------------------------------------------------------------

class WeightStore:
    """Converted weights of one GGUF in one format, memory-mapped from the cache."""

    def __init__(self, path: Path, fmt: str, directory: Path, index: dict, config: ModelConfig):
        self.path, self.fmt, self.directory = Path(path), fmt, Path(directory)
        self.sha256: str = index["sha256"]
        self.config = config
        self.hparams: dict = index["hparams"]
        self._tensors: dict = index["tensors"]

    @property
    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._entry(name)["shape"])

    def gguf_type(self, name: str) -> str:
        """The tensor's type in the GGUF file (Q4_K, Q8_0, F32, ...)."""
        return self._entry(name)["gguf_type"]

    def _entry(self, name: str) -> dict:
        if name not in self._tensors:
            raise ModelError(f"{self.path}: no tensor '{name}'", "names look like blk.0.attn_q.weight")
        return self._tensors[name]

    def _load(self, name: str) -> np.ndarray:
        return np.load(self.directory / self._entry(name)["file"], mmap_mode="r")

    def matrix(self, name: str) -> tuple[np.ndarray, int, int]:
        """(uint32 words in ``self.fmt``'s formats.pack layout, N, K) of a [N, K] matrix."""
        shape = self.shape(name)
        if len(shape) != 2:
            raise ModelError(f"tensor '{name}' is a vector of shape {list(shape)}, not a matrix")
        return self._load(name), shape[0], shape[1]

    def vector(self, name: str) -> np.ndarray:
        """A norm weight, fp32, exactly as the GGUF stores it (already 1 + w)."""
        shape = self.shape(name)
        if len(shape) != 1:
            raise ModelError(f"tensor '{name}' is a matrix of shape {list(shape)}, not a vector")
        return np.asarray(self._load(name), dtype=np.float32)

    def fp32(self, name: str) -> np.ndarray:
        """The fp32 values the device computes with (for ``f32``: the GGUF's dequantized values)."""
        if len(self.shape(name)) == 1:
            return self.vector(name)
        words, N, K = self.matrix(name)
        if self.fmt == "f32" and K % formats.BLOCK == 0:
            return words.view(np.float32).reshape(N, K)        # read-only memory map, no copy
        return formats.unpack(words, self.fmt, N, K)

    def __repr__(self) -> str:
        return f"WeightStore({self.path.name}, {self.config.name}, {self.fmt}, {self.directory})"


def _read_index(d: Path, sha256: str, fmt: str) -> dict | None:
    """The cache's index if it is complete and current, else None."""
    try:
        index = json.loads((d / "index.json").read_text())
    except (OSError, ValueError):
        return None
    if index.get("version") != CACHE_VERSION or index.get("sha256") != sha256 or index.get("fmt") != fmt:
        return None
    for entry in index.get("tensors", {}).values():
        if not (d / entry["file"]).is_file():
            return None
    return index


def load_weights(path: str | Path, fmt: str = "q8_0", *, configs: Path | None = None) -> WeightStore:
    """The weights of a Gemma 3 GGUF in device format ``fmt``, converted on first use and cached."""
    formats.check_format(fmt)
    path = check_file(Path(path))
    sha = file_sha256(path)
    dest = cache_dir() / "weights" / f"{sha[:16]}-{fmt}"
    index = _read_index(dest, sha, fmt)
    if index is None:
        if dest.exists():
            print(f"gemforge: the weight cache {dest} is out of date or damaged; converting again", file=sys.stderr)
        convert(path, fmt, dest, sha, configs)
        index = _read_index(dest, sha, fmt)
        assert index is not None, f"conversion left no usable cache in {dest}"
    cfg = config_from_hparams(index["hparams"], path, configs)
    return WeightStore(path, fmt, dest, index, cfg)
