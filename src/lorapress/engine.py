"""The one place that loads a model for generation and scoring. Every answer, score and summary goes through here.

Two backends with one interface, both greedy and seeded:
- `VllmEngine`: vLLM, adapters served as per-request `LoRARequest`s (the engine on GPUs,
  and for compression everywhere);
- `TransformersEngine`: transformers + peft, adapters loaded once and switched per batch
  (the CPU default for evaluation: faster there, see BENCHMARKS.md, and checked against
  vLLM on a sample of every evaluation chunk).

Both take the same token ids: conversations are rendered with the model's chat template
once, here, so the two backends answer, score and choose from identical inputs.
Three operations:
- `generate`: greedy replies with their finish reason (`stop` or `length` = truncated);
- `loglik`: per-token log-probabilities of a given reply (one forward pass, no generation);
- `choose`: the probability of each of a closed set of replies (a constrained judge).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .hardware import warn_if_emulated

log = logging.getLogger(__name__)

BACKENDS = ("vllm", "transformers")


@dataclass(frozen=True)
class EngineSettings:
    """The model and how it runs; every field comes from the validated config (no defaults here)."""

    model: str
    dtype: str
    max_model_len: int
    seed: int
    max_num_seqs: int
    trust_remote_code: bool
    chat_template_kwargs: dict

    @classmethod
    def from_engine(cls, model: str, engine: dict) -> "EngineSettings":
        """`engine`: a rule's engine param, {dtype, backend, model_config, generation} (see common.smk)."""
        model_config, generation = engine["model_config"], engine["generation"]
        return cls(model=model, dtype=engine["dtype"], max_model_len=model_config["max_model_len"],
                   seed=generation["seed"], max_num_seqs=generation["max_num_seqs"],
                   trust_remote_code=model_config["trust_remote_code"],
                   chat_template_kwargs=model_config["chat_template_kwargs"] or {})


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop": the model ended its reply; "length": cut at max_tokens
    n_tokens: int

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class _State:
    """Token ids, attention mask and positions of a batch of rows, their KV cache, and the log-probs of
    their last positions (the transformers backend's shared-prefix bookkeeping)."""

    ids: object
    mask: object
    positions: object
    cache: object
    logprobs: object


def logsumexp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def normalise(choices, logprobs: list[float]) -> dict[str, float]:
    """Probabilities of the choices, renormalised over them."""
    top = max(logprobs)
    weights = [math.exp(v - top) for v in logprobs]
    total = sum(weights)
    return {c: w / total for c, w in zip(choices, weights)}


class _Base:
    """Prompt rendering and the operations built on per-token log-probabilities."""

    settings: EngineSettings
    tokenizer: object

    def prompt_ids(self, conversation: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True,
                                                  **self.settings.chat_template_kwargs)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def reply_ids(self, reply: str) -> list[int]:
        return self.tokenizer(reply, add_special_tokens=False)["input_ids"]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def loglik(self, conversations: list[list[dict]], replies: list[str], *,
               adapters: list[str | None] | None = None) -> list[list[float]]:
        """Log-probability of each token of `replies[i]` as the reply to `conversations[i]`."""
        prompts = [self.prompt_ids(c) for c in conversations]
        conts = [self.reply_ids(r) for r in replies]
        return self._token_logprobs(prompts, conts, adapters or [None] * len(prompts))

    def answer(self, conversations: list[list[dict]], replies: list[list[str]], *, max_tokens: int,
               adapters: list[str | None] | None = None, repetition_penalty: float = 1.0, groups: list | None = None):
        """Greedy answers, and the per-token log-probabilities of each of `replies[i]` (e.g. the reference and
        a distractor) as the answer to `conversations[i]`. `groups`: requests with the same key share a prompt
        prefix (a system prompt, a context); an engine may compute it once."""
        answers = self.generate(conversations, max_tokens=max_tokens, adapters=adapters,
                                repetition_penalty=repetition_penalty)
        flat = [(i, r) for i, rs in enumerate(replies) for r in rs]
        adapters = adapters or [None] * len(conversations)
        scores = self.loglik([conversations[i] for i, _ in flat], [r for _, r in flat],
                             adapters=[adapters[i] for i, _ in flat])
        out: list[list] = [[] for _ in conversations]
        for (i, _), lp in zip(flat, scores):
            out[i].append(lp)
        return answers, out

    def next_token_logprobs(self, prompt: list[int], token_ids: list[int], adapter: str | None = None) -> list[float]:
        """Log-probabilities of each of `token_ids` as the next token after the token ids `prompt`."""
        return self._next_token_logprobs([prompt], list(token_ids), [adapter])[0]

    def spelling_ids(self, word: str) -> list[int]:
        """Every single token the tokenizer spells `word` with: the ids whose decoded text, stripped and
        lowercased, is `word` ("yes", "Yes", " yes", " YES", "\\nYes", ...). Decoded once per engine."""
        texts = getattr(self, "_token_texts", None)
        if texts is None:
            n, tok = len(self.tokenizer), self.tokenizer
            ids = [[i] for i in range(n)]
            texts = tok.batch_decode(ids) if hasattr(tok, "batch_decode") else [tok.decode(i) for i in ids]
            self._token_texts = texts
        word = word.strip().lower()
        return [i for i, text in enumerate(texts) if text.strip().lower() == word]

    def choose(self, conversations: list[list[dict]], choices: list[str], *,
               adapters: list[str | None] | None = None, groups: list | None = None,
               spellings: bool = False) -> list[dict[str, float]]:
        """P(reply = choice | conversation), normalised over `choices` (the reply is constrained to them).
        `groups`: conversations with the same key share most of their prompt (one question's judgements
        of several runs); an engine may compute their common prefix once. `spellings`: a choice is the class
        of every single token spelling it (`spelling_ids`), its log-probability their logsumexp, so a model
        that would answer "Yes" or " yes" chooses yes just as one answering "yes" does."""
        adapters = adapters or [None] * len(conversations)
        prompts = [self.prompt_ids(c) for c in conversations]
        if spellings:
            classes = [self.spelling_ids(c) for c in choices]
            missing = [c for c, ids in zip(choices, classes) if not ids]
            if missing:
                raise ValueError(f"no single token of the tokenizer spells {missing}")
            flat = sorted({t for ids in classes for t in ids})
            where = {t: k for k, t in enumerate(flat)}
            raw = self._next_token_logprobs(prompts, flat, adapters, groups)
            rows = [[logsumexp([row[where[t]] for t in ids]) for ids in classes] for row in raw]
            return [normalise(choices, row) for row in rows]
        ids = [self.reply_ids(c) for c in choices]
        if any(not i for i in ids):
            raise ValueError(f"empty choice in {choices}")
        if all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(ids):
            rows = self._next_token_logprobs(prompts, [i[0] for i in ids], adapters, groups)
        else:  # multi-token choices: the whole choice's log-probability
            flat = self._token_logprobs([p for p in prompts for _ in ids], [i for _ in prompts for i in ids],
                                        [a for a in adapters for _ in ids])
            rows = [[sum(flat[k * len(ids) + j]) for j in range(len(ids))] for k in range(len(prompts))]
        return [normalise(choices, row) for row in rows]

    def close(self) -> None:  # pragma: no cover - overridden where there is something to free
        pass


# ---------------------------------------------------------------- transformers + peft
class TransformersEngine(_Base):
    """transformers + peft on one device; adapters are loaded once and switched per group of requests."""

    backend = "transformers"

    def __init__(self, settings: EngineSettings, *, threads: int = 1, batch_size: int = 16):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        warning = warn_if_emulated(settings.dtype)
        if warning:
            log.warning(warning)
        torch.set_num_threads(max(1, threads))
        self.torch, self.settings, self.batch_size = torch, settings, batch_size
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(settings.model, trust_remote_code=settings.trust_remote_code)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(settings.model, dtype=getattr(torch, settings.dtype),
                                                          trust_remote_code=settings.trust_remote_code).to(self.device)
        self.model.eval()
        self.base = self.model
        self._adapters: dict[str, str] = {}  # resolved path -> adapter name
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        log.info("transformers engine: %s (%s) on %s, %d threads", settings.model, settings.dtype, self.device, threads)

    def _activate(self, adapter: str | None):
        """The model to call for `adapter` (None = the untuned base model)."""
        import contextlib

        if adapter is None:
            return self.model.disable_adapter() if self._adapters else contextlib.nullcontext()
        key = str(Path(adapter).resolve())
        if key not in self._adapters:
            from peft import PeftModel

            name = f"adapter{len(self._adapters) + 1}"
            if not self._adapters:
                self.model = PeftModel.from_pretrained(self.base, key, adapter_name=name)
            else:
                self.model.load_adapter(key, adapter_name=name)
            self.model.eval()
            self._adapters[key] = name
        self.model.set_adapter(self._adapters[key])
        return contextlib.nullcontext()

    def _groups(self, adapters: list[str | None]) -> dict[str | None, list[int]]:
        groups: dict[str | None, list[int]] = {}
        for i, adapter in enumerate(adapters):
            groups.setdefault(adapter, []).append(i)
        return groups

    def _batches(self, indices: list[int], lengths: list[int]):
        """Indices in batches of similar length (less padding), in a fixed order."""
        ordered = sorted(indices, key=lambda i: (lengths[i], i))
        for start in range(0, len(ordered), self.batch_size):
            yield ordered[start:start + self.batch_size]

    def _pad(self, rows: list[list[int]], left: bool):
        torch = self.torch
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, row in enumerate(rows):
            span = slice(width - len(row), width) if left else slice(0, len(row))
            ids[k, span], mask[k, span] = torch.tensor(row), 1
        return ids.to(self.device), mask.to(self.device)

    def generate(self, conversations: list[list[dict]], *, max_tokens: int | list[int],
                 adapters: list[str | None] | None = None, repetition_penalty: float = 1.0) -> list[Generation]:
        torch = self.torch
        prompts = [self.prompt_ids(c) for c in conversations]
        caps = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(prompts)
        out: list[Generation | None] = [None] * len(prompts)
        done, started = 0, time.perf_counter()
        for adapter, indices in self._groups(adapters or [None] * len(prompts)).items():
            with self._activate(adapter), torch.inference_mode():
                for batch in self._batches(indices, [len(p) for p in prompts]):
                    ids, mask = self._pad([prompts[i] for i in batch], left=True)
                    new = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                              max_new_tokens=max(caps[i] for i in batch),
                                              repetition_penalty=repetition_penalty, pad_token_id=self.tokenizer.pad_token_id)
                    for k, i in enumerate(batch):
                        out[i] = self._reply(new[k, ids.shape[1]:].tolist(), caps[i])
                    done += len(batch)
                    log.info("generated %d/%d replies (%.0f s)", done, len(prompts), time.perf_counter() - started)
        return out

    def _reply(self, tokens: list[int], cap: int) -> Generation:
        """Cut at the first stop token or at this request's own cap (a batch runs to its longest cap)."""
        for n, token in enumerate(tokens[:cap]):
            if token in self.stop_ids:
                return Generation(self.tokenizer.decode(tokens[:n], skip_special_tokens=True).strip(), "stop", n)
        kept = tokens[:cap]
        return Generation(self.tokenizer.decode(kept, skip_special_tokens=True).strip(), "length", len(kept))

    # -- shared prefixes: what several requests have in common is computed once, its cache reused
    def _share(self, indices: list[int], prompts: list[list[int]], groups: list | None) -> list[tuple[list[int], list[int]]]:
        """(common prefix, member indices) per group: a group's longest common prompt prefix, leaving every
        member at least its last token (its own next-token prediction). No groups: each prompt alone."""
        members: dict = {}
        for i in indices:
            members.setdefault(groups[i] if groups else i, []).append(i)
        shared = []
        for rows in members.values():
            first = prompts[rows[0]]
            common = min(len(prompts[i]) for i in rows) - 1
            for i in rows[1:]:
                common = next((k for k in range(common) if prompts[i][k] != first[k]), common)
            if common < 1:  # nothing in common: each prompt alone
                shared += [(prompts[i][:-1], [i]) for i in rows]
            else:
                shared.append((first[:common], rows))
        return shared

    def _chunks(self, shared: list[tuple[list[int], list[int]]]):
        """Groups in batches of at most `batch_size` prefixes and 4 x batch_size rows, similar lengths together."""
        order = sorted(range(len(shared)), key=lambda g: (len(shared[g][0]), g))
        batch, rows = [], 0
        for g in order:
            if batch and (len(batch) == self.batch_size or rows + len(shared[g][1]) > 4 * self.batch_size):
                yield batch
                batch, rows = [], 0
            batch.append(g)
            rows += len(shared[g][1])
        if batch:
            yield batch

    def _prefill(self, prefixes: list[list[int]]) -> "_State":
        ids, mask = self._pad(prefixes, left=True)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        return _State(ids, mask, positions, out.past_key_values, self.torch.log_softmax(out.logits.float(), dim=-1))

    def _continuation_inputs(self, state: "_State", rows: list[tuple[int, list[int]]], *, left: bool):
        """Inputs that continue row `rows[k][0]` of `state` with its tokens, on a copy of the state's cache:
        (row index, cache, token ids, their mask, positions, full attention mask)."""
        import copy

        index = self.torch.tensor([b for b, _ in rows], device=self.device)
        cache = copy.deepcopy(state.cache)
        cache.batch_select_indices(index)
        ids, rest_mask = self._pad([tokens for _, tokens in rows], left=left)
        positions = state.positions[index, -1:] + rest_mask.cumsum(-1)
        return index, cache, ids, rest_mask, positions, self.torch.cat([state.mask[index], rest_mask], dim=1)

    def _extend(self, state: "_State", rows: list[tuple[int, list[int]]], *, left: bool, keep: int) -> "_State":
        """Row k continues row `rows[k][0]` of `state` with its tokens (the state's cache is left untouched);
        log-probs of the last `keep` positions. Positions continue each row's own, so padding anywhere is inert."""
        torch = self.torch
        index, cache, ids, rest_mask, positions, mask = self._continuation_inputs(state, rows, left=left)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         logits_to_keep=keep)
        return _State(torch.cat([state.ids[index], ids], dim=1), mask,
                      torch.cat([state.positions[index], positions], dim=1), out.past_key_values,
                      torch.log_softmax(out.logits.float(), dim=-1))

    def _prompts(self, shared, batch) -> tuple["_State", list[int]]:
        """Every member prompt of a batch of groups, prefilled: (state with one row per member, member indices)."""
        state = self._prefill([shared[g][0] for g in batch])
        rows = [(n, i) for n, g in enumerate(batch) for i in shared[g][1]]
        return state, rows

    def _score(self, state: "_State", conts: list[tuple[int, list[int]]]) -> list[list[float]]:
        """Per-token log-probs of each continuation of a row of `state` (whose last position is real).

        Continuations go through in batches of similar length, and the vocabulary projection is applied
        only where a continuation token is predicted: a year and a rubric each cost what they are."""
        out: list[list[float] | None] = [None] * len(conts)
        order = sorted(range(len(conts)), key=lambda k: (len(conts[k][1]), k))
        for start in range(0, len(order), 4 * self.batch_size):
            batch = order[start:start + 4 * self.batch_size]
            for k, lp in zip(batch, self._score_batch(state, [conts[k] for k in batch])):
                out[k] = lp
        return out

    def _score_batch(self, state: "_State", conts: list[tuple[int, list[int]]]) -> list[list[float]]:
        if not conts:
            return []
        torch = self.torch
        model = self.model.get_base_model() if self._adapters else self.model
        _, cache, ids, rest_mask, positions, mask = self._continuation_inputs(state, conts, left=False)
        hidden = model.base_model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                  past_key_values=cache).last_hidden_state
        wanted = rest_mask[:, 1:].bool()  # position j predicts token j + 1
        logits = model.get_output_embeddings()(hidden[:, :-1][wanted]).float()
        targets = ids[:, 1:][wanted]
        picked = (logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)).tolist()
        out, start = [], 0
        for b, cont in conts:
            out.append([state.logprobs[b, -1, cont[0]].item(), *picked[start:start + len(cont) - 1]])
            start += len(cont) - 1
        return out

    def _run_shared(self, prompts, adapters, groups, work):
        """Prefill every prompt (sharing group prefixes), then `work(state, member indices)` per batch."""
        for adapter, indices in self._groups(adapters or [None] * len(prompts)).items():
            shared = self._share(indices, prompts, groups)
            with self._activate(adapter), self.torch.inference_mode():
                for batch in self._chunks(shared):
                    prefix, rows = self._prompts(shared, batch)
                    state = self._extend(prefix, [(n, prompts[i][len(shared[batch[n]][0]):]) for n, i in rows],
                                         left=True, keep=1)
                    work(state, [i for _, i in rows])

    def _token_logprobs(self, prompts, conts, adapters, groups=None) -> list[list[float]]:
        out: list[list[float] | None] = [None] * len(prompts)
        keys = groups or [tuple(p) for p in prompts]  # identical prompts at least share everything

        def work(state, members):
            for i, lp in zip(members, self._score(state, [(k, conts[i]) for k, i in enumerate(members)])):
                out[i] = lp

        self._run_shared(prompts, adapters, keys, work)
        return out

    def _next_token_logprobs(self, prompts, token_ids, adapters, groups=None) -> list[list[float]]:
        out: list[list[float] | None] = [None] * len(prompts)

        def work(state, members):
            for k, i in enumerate(members):
                out[i] = state.logprobs[k, -1, token_ids].tolist()

        self._run_shared(prompts, adapters, groups, work)
        return out

    def answer(self, conversations: list[list[dict]], replies: list[list[str]], *, max_tokens: int,
               adapters: list[str | None] | None = None, repetition_penalty: float = 1.0, groups: list | None = None):
        """One prefill per prompt (its group's common prefix once) serves the greedy answer and the scoring of
        every reply to it."""
        import copy

        prompts = [self.prompt_ids(c) for c in conversations]
        conts = [[self.reply_ids(r) for r in rs] for rs in replies]
        answers: list[Generation | None] = [None] * len(prompts)
        scores: list[list] = [[] for _ in prompts]
        started, done = time.perf_counter(), 0

        def work(state, members):
            nonlocal done
            rows = [(k, i, c) for k, i in enumerate(members) for c in conts[i]]
            for (_, i, _), lp in zip(rows, self._score(state, [(k, c) for k, _, c in rows])):
                scores[i].append(lp)
            cache = copy.deepcopy(state.cache)
            cache.crop(-1)  # generate recomputes the last prompt token, then decodes from the cache
            new = self.model.generate(input_ids=state.ids, attention_mask=state.mask, past_key_values=cache,
                                      do_sample=False, max_new_tokens=max_tokens, repetition_penalty=repetition_penalty,
                                      pad_token_id=self.tokenizer.pad_token_id)
            for k, i in enumerate(members):
                answers[i] = self._reply(new[k, state.ids.shape[1]:].tolist(), max_tokens)
            done += len(members)
            log.info("answered and scored %d/%d questions (%.0f s)", done, len(prompts), time.perf_counter() - started)

        self._run_shared(prompts, adapters, groups, work)
        return answers, scores

    def close(self) -> None:
        import gc

        del self.model, self.base
        gc.collect()


# ---------------------------------------------------------------- vLLM
def vllm_engine_args(settings: EngineSettings, *, on_cpu: bool, gpu_memory_utilization: float = 0.9,
                     max_loras: int = 0, max_lora_rank: int = 16,
                     lora_target_modules: list[str] | None = None) -> dict:
    """The arguments of `vllm.LLM` for these settings on this platform.

    CUDA graphs on GPUs: decode-bound generation (summaries, answers) runs several times faster with them, and
    the planning figures of config/throughput.yaml assume them; vLLM's CPU backend has none, so eager there.
    `gpu_memory_utilization`: the share of the card the engine takes (weights, activations, KV cache); a
    resource, not a result. On CPUs the KV cache is VLLM_CPU_KVCACHE_SPACE instead.
    """
    kwargs = dict(model=settings.model, dtype=settings.dtype, seed=settings.seed, max_model_len=settings.max_model_len,
                  max_num_seqs=settings.max_num_seqs, trust_remote_code=settings.trust_remote_code,
                  enforce_eager=on_cpu)
    if not on_cpu:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    if max_loras:
        # One slot more than adapters: vLLM-CPU 0.32 applies the last slot's adapter to base requests
        # batched with LoRA ones (vllm#48421), and base requests are also never batched with them (`_run`).
        # Naming the target modules keeps lm_head unwrapped, whose LoRA logits path crashes on prompt
        # log-probabilities of more than one request (vllm#29955).
        kwargs.update(enable_lora=True, max_loras=max_loras + 1, max_lora_rank=max_lora_rank)
        if lora_target_modules:
            kwargs["lora_target_modules"] = sorted(lora_target_modules)
    return kwargs


class VllmEngine(_Base):
    """A started vLLM engine. Starting is the expensive part (~30 s on CPU), so a job starts it once."""

    backend = "vllm"

    def __init__(self, settings: EngineSettings, *, max_loras: int = 0, max_lora_rank: int = 16,
                 lora_target_modules: list[str] | None = None, threads: int = 1, in_process: bool = False):
        """`in_process`: on a CPU, run the engine in this process (vLLM's V1 multiprocessing off): one Python
        process instead of three (this one, the engine core, its worker), each of which imports torch and
        vLLM, so it starts in about half the time and CPU (30 s against 59 s on 2 AVX2 cores, the same
        greedy answer). For an engine that answers a few questions; a long generation keeps vLLM's processes
        and their thread binding. No effect on GPUs."""
        # Read by the CPU backend when the engine core starts (the rule sets it from resources); harmless on GPU.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        warning = warn_if_emulated(settings.dtype)
        if warning:
            log.warning(warning)
        from vllm import LLM
        from vllm.platforms import current_platform

        self.settings = settings
        kwargs = vllm_engine_args(settings, on_cpu=current_platform.is_cpu(),
                                  gpu_memory_utilization=float(os.environ.get("LORAPRESS_GPU_MEMORY_UTILIZATION", 0.9)),
                                  max_loras=max_loras, max_lora_rank=max_lora_rank,
                                  lora_target_modules=lora_target_modules)
        in_process = in_process and current_platform.is_cpu()
        log.info("starting vLLM engine%s: %s", " in this process" if in_process else "", kwargs)
        started = time.perf_counter()
        saved = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
        if in_process:  # read when the engine starts: its core and its executor stay in this process
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        try:
            self.llm = LLM(**kwargs)
        finally:
            if in_process:
                os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
                if saved is not None:
                    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = saved
        log.info("vLLM engine started in %.1f s", time.perf_counter() - started)
        self.tokenizer = self.llm.get_tokenizer()
        self._lora_requests: dict[str, object] = {}

    def lora_request(self, adapter_dir: str | os.PathLike | None):
        """One `LoRARequest` per adapter directory, with a unique name and id."""
        if adapter_dir is None:
            return None
        from vllm.lora.request import LoRARequest

        key = str(Path(adapter_dir).resolve())
        if key not in self._lora_requests:
            lora_id = len(self._lora_requests) + 1
            self._lora_requests[key] = LoRARequest(f"adapter{lora_id}", lora_id, key)
        return self._lora_requests[key]

    def _run(self, token_ids: list[list[int]], sampling, adapters: list[str | None] | None):
        """Requests through the engine, in order; base requests and adapter requests in separate calls."""
        from vllm.inputs import TokensPrompt

        adapters = adapters or [None] * len(token_ids)
        sampling = sampling if isinstance(sampling, list) else [sampling] * len(token_ids)
        outputs = [None] * len(token_ids)
        for with_lora in (False, True):
            idx = [i for i, a in enumerate(adapters) if bool(a) == with_lora]
            if not idx:
                continue
            lora = [self.lora_request(adapters[i]) for i in idx] if with_lora else None
            # use_tqdm: the progress bar goes to stderr, i.e. the job's log (TQDM_DISABLE must stay unset:
            # with it vLLM 0.32 divides by a zero elapsed time)
            done = self.llm.generate([TokensPrompt(prompt_token_ids=token_ids[i]) for i in idx],
                                     [sampling[i] for i in idx], lora_request=lora, use_tqdm=True)
            for i, out in zip(idx, done):
                outputs[i] = out
        return outputs

    def generate(self, conversations: list[list[dict]], *, max_tokens: int | list[int],
                 adapters: list[str | None] | None = None, repetition_penalty: float = 1.0) -> list[Generation]:
        from vllm import SamplingParams

        caps = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(conversations)
        sampling = [SamplingParams(temperature=0.0, max_tokens=cap, seed=self.settings.seed,
                                   repetition_penalty=repetition_penalty) for cap in caps]
        outputs = self._run([self.prompt_ids(c) for c in conversations], sampling, adapters)
        return [Generation(o.outputs[0].text.strip(), o.outputs[0].finish_reason or "stop",
                           len(o.outputs[0].token_ids)) for o in outputs]

    def _token_logprobs(self, prompts, conts, adapters) -> list[list[float]]:
        from vllm import SamplingParams

        # One forward pass over prompt + reply; prompt_logprobs=0 returns each actual token's log-probability.
        sampling = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0, seed=self.settings.seed,
                                  detokenize=False)
        full = [p + c for p, c in zip(prompts, conts)]
        outputs = self._run(full, sampling, adapters)
        rows = []
        for o, p, f in zip(outputs, prompts, full):
            rows.append([o.prompt_logprobs[k][f[k]].logprob for k in range(len(p), len(f))])
        return rows

    def _next_token_logprobs(self, prompts, token_ids, adapters, groups=None) -> list[list[float]]:
        from vllm import SamplingParams

        # `groups` needs no handling here: vLLM's prefix cache shares common prompt blocks by itself.
        # logprob_token_ids: the raw (unprocessed) log-probabilities of exactly these next tokens. `logprobs` is
        # left unset: set, it must equal their number and stay within max_logprobs (20), which every spelling
        # of yes and no can exceed; unset, up to 128 ids are allowed (more go in several passes).
        token_ids, width = list(token_ids), 128
        rows: list[list[float]] = [[] for _ in prompts]
        for start in range(0, len(token_ids), width):
            part = token_ids[start:start + width]
            sampling = SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=part, seed=self.settings.seed,
                                      detokenize=False)
            for row, o in zip(rows, self._run(prompts, sampling, adapters)):
                row += [o.outputs[0].logprobs[0][t].logprob for t in part]
        return rows

    def close(self) -> None:
        """Stop the engine's processes now (e.g. before a second engine starts in the same job)."""
        import gc

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()


def add_runtime_arguments(parser) -> None:
    """How an engine job uses the machine: speed only, never what is generated (so never a rule's param)."""
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--kv-cache-gib", type=int, default=1, help="vLLM's CPU KV cache (VLLM_CPU_KVCACHE_SPACE)")
    parser.add_argument("--cpu-bind", default="nobind", help="VLLM_CPU_OMP_THREADS_BIND for CPU engines")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9,
                        help="share of a GPU's memory a vLLM engine takes (generation.gpu_memory_utilization)")


def apply_runtime(args) -> None:
    """Set the environment vLLM's CPU backend reads when its engine core starts (harmless on GPU)."""
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(args.kv_cache_gib)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = args.cpu_bind
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["LORAPRESS_GPU_MEMORY_UTILIZATION"] = str(args.gpu_memory_utilization)
    from .devices import claim_gpu

    claim_gpu()


def open_engine(backend: str, settings: EngineSettings, *, max_loras: int = 0, max_lora_rank: int = 16,
                lora_target_modules: list[str] | None = None, threads: int = 1, in_process: bool = False):
    """`in_process`: see VllmEngine (the transformers backend always runs in this process)."""
    if backend == "vllm":
        return VllmEngine(settings, max_loras=max_loras, max_lora_rank=max_lora_rank,
                          lora_target_modules=lora_target_modules, threads=threads, in_process=in_process)
    if backend == "transformers":
        return TransformersEngine(settings, threads=threads)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
