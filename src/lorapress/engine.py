"""The one place that starts a vLLM engine. Every generation in lorapress goes through here.

Decoding is greedy and seeded, so a rerun gives the same text. Adapters are
served by one engine as per-request `LoRARequest`s: starting the engine is
the expensive part on CPU, so a job starts it once for many adapters.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class EngineSettings:
    """Config `generation:` plus the model; see the config schema for each key."""

    model: str
    seed: int = 0
    dtype: str = "float32"
    max_model_len: int = 2048
    kv_cache_gib: float = 1.0
    max_num_seqs: int = 64
    repetition_penalty: float = 1.0
    trust_remote_code: bool = False
    chat_template_kwargs: dict = field(default_factory=dict)
    enforce_eager: bool = True

    @classmethod
    def from_config(cls, model: str, generation: dict, model_config: dict) -> "EngineSettings":
        return cls(
            model=model,
            seed=generation.get("seed", 0),
            dtype=model_config.get("dtype", "float32"),
            max_model_len=model_config.get("max_model_len", 2048),
            kv_cache_gib=generation.get("kv_cache_gib", 1.0),
            max_num_seqs=generation.get("max_num_seqs", 64),
            repetition_penalty=generation.get("repetition_penalty", 1.0),
            trust_remote_code=model_config.get("trust_remote_code", False),
            chat_template_kwargs=model_config.get("chat_template_kwargs", {}) or {},
        )


class Engine:
    """A started vLLM engine; `chat` runs a batch of conversations greedily."""

    def __init__(self, settings: EngineSettings, *, max_loras: int = 0, max_lora_rank: int = 16):
        # Read by the CPU backend when the engine core starts; harmless on GPU.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(settings.kv_cache_gib))))
        from vllm import LLM

        self.settings = settings
        kwargs = dict(
            model=settings.model,
            dtype=settings.dtype,
            seed=settings.seed,
            max_model_len=settings.max_model_len,
            max_num_seqs=settings.max_num_seqs,
            trust_remote_code=settings.trust_remote_code,
            enforce_eager=settings.enforce_eager,
        )
        if max_loras:
            kwargs.update(enable_lora=True, max_loras=max_loras, max_lora_rank=max_lora_rank)
        log.info("starting vLLM engine: %s", kwargs)
        self.llm = LLM(**kwargs)
        self._lora_requests: dict[str, object] = {}

    @property
    def tokenizer(self):
        return self.llm.get_tokenizer()

    def lora_request(self, adapter_dir: str | os.PathLike):
        """One `LoRARequest` per adapter directory, with a unique name and id."""
        from vllm.lora.request import LoRARequest

        key = str(Path(adapter_dir).resolve())
        if key not in self._lora_requests:
            lora_id = len(self._lora_requests) + 1
            self._lora_requests[key] = LoRARequest(f"adapter{lora_id}", lora_id, key)
        return self._lora_requests[key]

    def sampling(self, max_tokens: int):
        from vllm import SamplingParams

        return SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=self.settings.seed,
                              repetition_penalty=self.settings.repetition_penalty)

    def chat(
        self,
        conversations: list[list[dict]],
        *,
        max_tokens: int | list[int],
        adapters: list[str | None] | None = None,
    ) -> list[str]:
        """Greedy replies to `conversations`, each optionally through its adapter."""
        if not conversations:
            return []
        if isinstance(max_tokens, int):
            sampling = self.sampling(max_tokens)
        else:
            sampling = [self.sampling(n) for n in max_tokens]
        lora = None
        if adapters is not None and any(adapters):
            lora = [self.lora_request(a) if a else None for a in adapters]
        outputs = self.llm.chat(
            conversations,
            sampling,
            use_tqdm=False,
            lora_request=lora,
            chat_template_kwargs=self.settings.chat_template_kwargs or None,
        )
        return [out.outputs[0].text.strip() for out in outputs]

    def close(self) -> None:
        """Stop the engine's processes now (e.g. before a second engine starts in the same job)."""
        import gc

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()

    def count_tokens(self, texts: list[str]) -> list[int]:
        tok = self.tokenizer
        return [len(tok.encode(t, add_special_tokens=False)) for t in texts]
