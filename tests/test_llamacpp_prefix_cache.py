"""The llamacpp backend's prefix cache (LlamaCppConfig.prefix_cache_mb): llama-cpp-python's RAM
cache is set on the real embedded model once a call carries a cache key, and holds that call's
state; without a key, or with a capacity of 0, there is none. The settings reach the backend
through the factory."""

from __future__ import annotations

import anyio
import pytest
from llama_cpp import LlamaRAMCache

from rapport.config.backend_settings import LlamaCppConfig
from rapport.engine.backends.llamacpp_backend import LlamaCppBackend, resolve_model_path
from rapport.engine.factory import build_backend
from rapport.engine.types import ChatMessage, CompletionParams

pytestmark = pytest.mark.slow  # a real model

HELLO = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hello.")]


def _cache_after_one_call(prefix_cache_mb: int, cache_key: str | None):
    path = resolve_model_path(None, "run.yaml", "backends.assistant.model_path")
    backend = LlamaCppBackend(
        model_path=path, n_ctx=512, threads=None, prefix_cache_mb=prefix_cache_mb
    )
    params = CompletionParams(max_tokens=4, temperature=0.0, seed=1, cache_key=cache_key)

    async def go():
        try:
            await backend.complete(HELLO, params)
            assert backend._llama is not None
            return backend._llama.cache
        finally:
            await backend.aclose()

    return anyio.run(go)


def test_a_call_with_a_cache_key_fills_the_prefix_cache():
    cache = _cache_after_one_call(16, "c1:user")
    assert isinstance(cache, LlamaRAMCache)
    assert cache.capacity_bytes == 16 * 1024 * 1024
    assert len(cache.cache_state) == 1  # the state after this call's prompt and reply


@pytest.mark.parametrize(("mb", "key"), [(16, None), (0, "c1:user")])
def test_no_cache_without_a_key_or_capacity(mb, key):
    assert _cache_after_one_call(mb, key) is None


def test_the_factory_passes_the_capacity_on():  # no model is loaded here
    settings = LlamaCppConfig(prefix_cache_mb=64)
    backend = build_backend(settings, {}, "run.yaml", "backends.assistant")
    assert backend.prefix_cache_bytes == 64 * 1024 * 1024
    assert LlamaCppConfig().prefix_cache_mb == 512  # on by default: see the bench
