"""embed (gather of table rows times a scale) against the numpy reference, every format.

Tables are split in row parts (as the 262144-row Gemma vocabulary is on devices with small
buffers): every part's dispatch writes exactly the tokens whose id falls in its rows.
"""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.spec import load_spec
from gemforge.runtime import formats, paths
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.kernels import row_words, upload_weight
from tests.conftest import SENTINEL, assert_close

TOL = load_spec(paths.configs_dir() / "ops" / "embed.yaml").tolerance
SCALE = float(np.float32(np.sqrt(640)))     # Gemma's sqrt(hidden), in fp32


@pytest.mark.parametrize("T", [1, 7, 256])
@pytest.mark.parametrize("K,part_rows", [(96, None), (1000, 120)])
@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_embed(device, kernels, rng, fmt, K, part_rows, T):
    """K = 96: three blocks (odd); K = 1000: a partial last chunk. Ids hit both sides of part boundaries."""
    V = 500
    table = (rng.standard_normal((V, K)) * 0.05).astype(np.float32)
    qw, sw = row_words(fmt, K)
    W = upload_weight(device, table, fmt, "table",
                      max_part_bytes=part_rows and 4 * (qw + sw) * part_rows + 64)
    edges = [p.row0 for p in W.parts[1:]]
    if part_rows:
        assert len(W.parts) == 5
    must = np.array([0, V - 1] + edges + [e - 1 for e in edges], np.int64)
    ids = rng.integers(0, V, T)
    ids[:min(T, len(must))] = must[:T]
    ids = rng.permutation(ids).astype(np.uint32)
    out = device.upload(np.full((T + 2, K), SENTINEL, np.float32))
    rec = device.record()
    kernels.embed(rec, W, device.upload(ids), out, T, SCALE)
    rec.submit()
    got = out.read(np.float32, (T + 2) * K).reshape(T + 2, K)
    assert np.all(got[T:] == SENTINEL), "embed wrote rows >= T"
    want = ref.embed(formats.quantize_roundtrip(table, fmt), ids, SCALE)
    assert_close(got[:T], want, TOL[fmt], f"embed {fmt} K={K} T={T}")


def test_embed_errors(device, kernels, rng):
    W = upload_weight(device, rng.standard_normal((10, 64)).astype(np.float32), "q8_0", "table")
    ids = device.upload(np.arange(4, dtype=np.uint32))
    with pytest.raises(GemforgeError, match=r"embed 'table' out: buffer 'out' holds 768 bytes, 1024 needed"):
        kernels.embed(device.record(), W, ids, device.buffer(3 * 64 * 4, "out"), 4, 1.0)
    with pytest.raises(GemforgeError, match=r"embed 'table' ids: buffer 'ids' holds 16 bytes, 20 needed"):
        kernels.embed(device.record(), W, device.upload(np.arange(4, dtype=np.uint32), "ids"),
                      device.buffer(5 * 64 * 4), 5, 1.0)
    with pytest.raises(GemforgeError, match="T = 0 tokens"):
        kernels.embed(device.record(), W, ids, device.buffer(64 * 4), 0, 1.0)
