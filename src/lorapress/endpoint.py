"""A judge behind an OpenAI-compatible endpoint (a hosted model, or `vllm serve` elsewhere).

The API key is read from the environment variable the config names, at call time; it is
never stored in settings, logs or outputs. Constrained verdicts use vLLM's structured
outputs (`extra_body={"structured_outputs": {"choice": [...]}}`) with the first token's
log-probabilities, every spelling of yes and no among them counted for its class; an endpoint
that ignores the constraint answers free text, which the judge reads by LongMemEval's rule.
OpenAI's own API rejects that extra body: a judge there runs with `judge.constrained: false`
(free text at temperature 0, as the official evaluation does).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

from .engine import Generation

log = logging.getLogger(__name__)

PREFIX = "openai:"


def choice_probs(text: str, top: list[tuple[str, float]], choices, spellings: bool) -> dict[str, float]:
    """The choices' probabilities from a reply and its first token's top log-probabilities (token, logprob).

    Without `spellings` a top token counts for a choice when its stripped text is the choice; with it, when
    its stripped, lowercased text is (the choices are lowercase then). {}: the reply kept to no choice."""
    key = (lambda t: t.strip().lower()) if spellings else (lambda t: t.strip())
    if key(text) not in choices:
        return {}
    weights = {c: 0.0 for c in choices}
    for token, logprob in top:
        if key(token) in weights and logprob > -1e4:
            p = math.exp(logprob)  # spellings: a class's probability is the sum over its tokens
            weights[key(token)] = weights[key(token)] + p if spellings else max(weights[key(token)], p)
    total = sum(weights.values())
    if total <= 0:  # no log-probabilities came back: the verdict without its weights
        return {c: float(c == key(text)) for c in choices}
    return {c: w / total for c, w in weights.items()}


class EndpointJudge:
    """The judge interface of `Engine` (`choose`, `generate`), answered by an OpenAI-compatible server."""

    backend = "openai"

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

    def _map(self, fn, items):
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, items))

    def generate(self, conversations: list[list[dict]], *, max_tokens: int | list[int], adapters=None,
                 repetition_penalty: float = 1.0) -> list[Generation]:
        """Greedy replies. `repetition_penalty` is not sent: OpenAI's API has none (an endpoint compressor
        decodes plainly greedy)."""
        if adapters and any(adapters):
            raise ValueError("an endpoint judge serves no adapters")
        caps = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(conversations)

        def one(job):
            messages, cap = job
            reply = self.client.chat.completions.create(model=self.model, messages=messages, temperature=0.0,
                                                        max_tokens=cap, seed=self.seed)
            choice = reply.choices[0]
            return Generation((choice.message.content or "").strip(), choice.finish_reason or "stop",
                              reply.usage.completion_tokens if reply.usage else 0)

        return self._map(one, list(zip(conversations, caps)))

    def choose(self, conversations: list[list[dict]], choices: list[str], *, adapters=None,
               groups=None, spellings: bool = False) -> list[dict[str, float]]:
        """Probabilities of the choices from the first reply token's top log-probabilities; {} when the endpoint
        did not keep to the choices (an unparsed verdict). `spellings`: every top token whose text, stripped and
        lowercased, is a choice counts for it ("Yes", " yes"), their probabilities summed."""
        if adapters and any(adapters):
            raise ValueError("an endpoint judge serves no adapters")

        def one(messages):
            reply = self.client.chat.completions.create(
                model=self.model, messages=messages, temperature=0.0, seed=self.seed,
                max_tokens=max(len(c) for c in choices) + 1, logprobs=True, top_logprobs=min(20, 2 * len(choices) + 5),
                extra_body={"structured_outputs": {"choice": list(choices)}})
            choice = reply.choices[0]
            top = choice.logprobs.content[0].top_logprobs if choice.logprobs and choice.logprobs.content else []
            return choice_probs((choice.message.content or "").strip(),
                                [(entry.token, entry.logprob) for entry in top], choices, spellings)

        return self._map(one, conversations)

    def close(self) -> None:
        self.client.close()


class EndpointCompressor(EndpointJudge):
    """A generate variant's compressor behind an OpenAI-compatible endpoint. Replies come from the endpoint;
    pieces, reply caps and the room left in the context are counted with the base model's tokenizer (the
    endpoint's own is not at hand, so the caps are approximate) within model.max_model_len."""

    def __init__(self, settings: dict, tokenizer_dir: str, max_model_len: int, seed: int = 0,
                 chat_template_kwargs: dict | None = None):
        from types import SimpleNamespace

        from transformers import AutoTokenizer

        super().__init__(settings["compressor"], settings["base_url"], settings["api_key_env"], seed)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.settings = SimpleNamespace(max_model_len=max_model_len, chat_template_kwargs=chat_template_kwargs or {})

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def prompt_ids(self, conversation: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True,
                                                  **self.settings.chat_template_kwargs)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
