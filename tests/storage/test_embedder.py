"""The embedding model computes in bf16 only where the CPU does that fast, with the same
neighbours either way."""

import numpy as np

from oppu.storage import cpu_bf16

PASSAGES = ["Every August I sail around the lighthouse at Skerry Point.",
            "Feed the sourdough starter at eight and bake at noon.",
            "The accountant wants the tax invoices by Friday.",
            "Rye flour makes the loaf more sour and dense."]


def test_embeddings_in_bf16_are_float32_unit_vectors_close_to_fp32(monkeypatch, embedder):
    monkeypatch.setattr(cpu_bf16, "cpu_bf16_speedup", lambda: 0.4)  # emulated: fp32
    exact = embedder.embed(PASSAGES)
    monkeypatch.setattr(cpu_bf16, "cpu_bf16_speedup", lambda: 7.7)  # AMX: bf16 matmuls
    fast = embedder.embed(PASSAGES)
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-3)
    assert ((fast * exact).sum(axis=1) > 0.995).all()
    query = embedder.embed(["when do I bake bread"])[0]
    assert np.argsort(-(fast @ query))[:2].tolist() == np.argsort(-(exact @ query))[:2].tolist()


def test_the_choice_follows_the_measured_speed(monkeypatch):
    import torch

    monkeypatch.setattr(cpu_bf16, "cpu_bf16_speedup", lambda: 7.7)
    with cpu_bf16.fast_cpu_matmuls():
        assert torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(cpu_bf16, "cpu_bf16_speedup", lambda: 0.4)
    with cpu_bf16.fast_cpu_matmuls():
        assert not torch.is_autocast_enabled("cpu")
