"""Stage `train`: one LoRA/QLoRA adapter on one condition's text.

Reads top to bottom like a recipe: settings in, base model (4-bit nf4 with
double quantisation for QLoRA) and tokenizer, training examples from the
compressed items, a plain AdamW loop with warm-up and gradient accumulation,
and the adapter saved with its settings and loss curve.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .io import atomic_path, provenance, read_jsonl, write_json

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Config `train:` (see the schema for each key) plus the run's rank, items and seed."""

    method: str = "qlora"  # qlora | lora
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    lr: float = 2e-4
    epochs: int = 1
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    warmup_steps: int = 0
    weight_decay: float = 0.0
    packing: bool = False  # concatenate texts and cut max_length blocks instead of padding each batch
    seed: int = 0
    items: int | None = None  # first N items; None = all
    trust_remote_code: bool = False

    @classmethod
    def from_dict(cls, values: dict) -> "TrainSettings":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def training_texts(records: list[dict], items: int | None) -> list[str]:
    """The condition's text of the first `items` items, headed by the item title."""
    chosen = records if items is None else records[:items]
    return [f"{r['title']}\n\n{r['text']}" for r in chosen if r["text"].strip()]


def load_model(model_dir: str, settings: TrainSettings):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=settings.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {"trust_remote_code": settings.trust_remote_code}
    if settings.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = "cuda:0" if torch.cuda.is_available() else "cpu"
    else:
        kwargs["dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if settings.method == "lora" and torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer


def add_adapter(model, settings: TrainSettings):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if settings.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def batches(tokenizer, texts: list[str], settings: TrainSettings, rng: random.Random):
    """Shuffled batches of (input_ids, attention_mask, labels, real tokens).

    Padded: one text per row, padding masked out of the loss with -100.
    Packed: all texts (each ended by EOS) in one stream cut into max_length rows, no padding.
    """
    import torch

    order = list(range(len(texts)))
    rng.shuffle(order)
    if settings.packing:
        stream = [t for i in order for t in tokenizer(texts[i] + tokenizer.eos_token)["input_ids"]]
        rows = [stream[k:k + settings.max_length] for k in range(0, len(stream), settings.max_length)]
        for start in range(0, len(rows), settings.batch_size):
            chunk = rows[start:start + settings.batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for k, row in enumerate(chunk):  # only the stream's last row can be short
                ids[k, :len(row)], mask[k, :len(row)] = torch.tensor(row), 1
            yield ids, mask, ids.masked_fill(mask == 0, -100), int(mask.sum())
        return
    for start in range(0, len(order), settings.batch_size):
        chunk = [texts[i] + tokenizer.eos_token for i in order[start:start + settings.batch_size]]
        enc = tokenizer(chunk, truncation=True, max_length=settings.max_length, padding=True, return_tensors="pt")
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        yield enc["input_ids"], enc["attention_mask"], labels, int(enc["attention_mask"].sum())


def train(model_dir: str, compressed_path: str, out_dir: str, settings: TrainSettings, threads: int = 1) -> dict:
    import torch
    from transformers import get_linear_schedule_with_warmup
    from transformers import set_seed

    torch.set_num_threads(max(1, threads))
    set_seed(settings.seed)
    rng = random.Random(settings.seed)
    texts = training_texts(read_jsonl(compressed_path), settings.items)
    if not texts:
        raise ValueError(f"{compressed_path}: no non-empty training text")

    model, tokenizer = load_model(model_dir, settings)
    model = add_adapter(model, settings)
    device = next(model.parameters()).device
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=settings.weight_decay
    )
    n_batches = sum(1 for _ in batches(tokenizer, texts, settings, random.Random(0)))
    steps_per_epoch = math.ceil(n_batches / settings.grad_accum)
    total_steps = steps_per_epoch * settings.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, settings.warmup_steps, total_steps)

    model.train()
    losses, tokens_seen, started, micro = [], 0, time.perf_counter(), 0
    for epoch in range(settings.epochs):
        for input_ids, attention_mask, labels, n_tokens in batches(tokenizer, texts, settings, rng):
            out = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), labels=labels.to(device))
            (out.loss / settings.grad_accum).backward()
            tokens_seen += n_tokens
            micro += 1
            losses.append(round(out.loss.item(), 4))
            if micro % settings.grad_accum == 0:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        log.info("epoch %d: mean loss %.4f", epoch + 1, sum(losses[-n_batches:]) / n_batches)
    if micro % settings.grad_accum:
        optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - started

    summary = {
        "n_texts": len(texts),
        "trainable_params": trainable,
        "optimizer_steps": total_steps,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "losses": losses,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": round(tokens_seen / seconds, 1) if seconds else None,
    }
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        write_json(Path(tmp) / "lorapress_train.json", provenance(asdict(settings), **summary))
    return summary
