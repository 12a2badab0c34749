"""A judge behind an OpenAI-compatible endpoint (a hosted model, or `vllm serve` elsewhere).

The API key is read from the environment variable the config names, at call
time; it is never stored in settings, logs or outputs.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

PREFIX = "openai:"


class EndpointJudge:
    """Same `chat` interface as `Engine`, answered by an OpenAI-compatible server."""

    def __init__(self, model: str, base_url: str | None, api_key_env: str, seed: int = 0, concurrency: int = 4):
        if model.startswith(PREFIX):
            model = model[len(PREFIX):]
        key = os.environ.get(api_key_env)
        if not key:
            raise RuntimeError(f"judge: environment variable {api_key_env} (judge.api_key_env) is not set")
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=3, timeout=120)
        self.model, self.seed, self.concurrency = model, seed, concurrency
        log.info("judge: %s at %s (key from $%s)", model, base_url or "the default endpoint", api_key_env)

    def _one(self, messages: list[dict], max_tokens: int) -> str:
        reply = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0.0,
                                                    max_tokens=max_tokens, seed=self.seed)
        return (reply.choices[0].message.content or "").strip()

    def chat(self, conversations: list[list[dict]], *, max_tokens: int, adapters=None) -> list[str]:
        if adapters and any(adapters):
            raise ValueError("an endpoint judge serves no adapters")
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda c: self._one(c, max_tokens), conversations))
