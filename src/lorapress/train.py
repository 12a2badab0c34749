"""Stage `train`: one LoRA/QLoRA adapter on one condition's text.

Reads top to bottom like a recipe: settings in; base model (4-bit nf4 with double
quantisation for QLoRA) and tokenizer; training examples from the condition's items;
a plain AdamW loop with a warm-up/decay schedule and gradient accumulation; the
adapter saved with its settings, schedule, tokens seen and loss curve.

Three rules keep the numbers honest:
- every token is trained: an item longer than `max_length` is cut into consecutive
  pieces (or packed), never truncated, so `original_text` is not silently shortened
  while its summaries fit whole;
- the schedule counts the optimizer steps actually taken, its warm-up is a ratio of
  them (so a small capacity tier warms up as fully as a large one), and its first step
  already has a learning rate above zero (a step at LR 0 leaves LoRA B at zero: a no-op);
- a run whose steps do not exceed its warm-up is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .io import StageError, atomic_path, parse_json_arg, provenance, read_jsonl, write_json

log = logging.getLogger(__name__)

SCALINGS = ("fixed", "proportional", "rslora")


@dataclass(frozen=True)
class TrainSettings:
    """Config `train:` (see the schema for each key; defaults live only there) plus the run's own values."""

    method: str  # qlora | lora
    compute_dtype: str  # resolved: float32 | bfloat16 | float16
    rank: int
    alpha: float
    scaling: str  # fixed | proportional | rslora
    reference_rank: int  # train.rank: the rank whose scaling `proportional` keeps
    dropout: float
    target_modules: list
    lr: float
    epochs: int
    batch_size: int
    grad_accum: int
    max_length: int
    warmup_ratio: float
    weight_decay: float
    packing: bool
    gradient_checkpointing: str  # auto | on | off
    log_every: int
    seed: int
    items: int | None  # first N items; None = all
    trust_remote_code: bool

    @classmethod
    def from_dict(cls, values: dict) -> "TrainSettings":
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(values) - names), sorted(names - set(values))
        if unknown or missing:
            raise StageError(f"train settings: unknown keys {unknown}, missing keys {missing}")
        return cls(**values)

    @property
    def lora_alpha(self) -> float:
        if self.scaling == "proportional":  # alpha grows with the rank: alpha/r stays that of the reference rank
            return self.alpha * self.rank / self.reference_rank
        return self.alpha

    @property
    def checkpointing(self) -> bool:
        """Recompute activations in the backward pass: `auto` = for QLoRA, the method for models too large
        to hold a micro-batch's activations otherwise (an 8B model at 4 x 2048 tokens: ~40 GB without)."""
        return self.gradient_checkpointing == "on" or (self.gradient_checkpointing == "auto" and self.method == "qlora")

    @property
    def lora_scaling(self) -> float:
        """The factor the adapter's update is multiplied by."""
        root = math.sqrt(self.rank) if self.scaling == "rslora" else self.rank
        return self.lora_alpha / root


# ---------------------------------------------------------------- schedule (pure)
def schedule_steps(n_batches: int, grad_accum: int, epochs: int, warmup_ratio: float) -> tuple[int, int, int]:
    """(steps per epoch, total optimizer steps, warm-up steps); accumulation never spans epochs."""
    per_epoch = math.ceil(n_batches / grad_accum)
    total = per_epoch * epochs
    return per_epoch, total, math.floor(warmup_ratio * total)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based): linear warm-up that starts above
    zero, reaching 1 at step `warmup`, then linear decay that ends above zero at the last step."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return (total - step) / (total - warmup)


# ---------------------------------------------------------------- data
def training_texts(records: list[dict], items: int | None) -> list[str]:
    """The condition's text of the first `items` items, headed by the item title (a chat session's date)."""
    chosen = records if items is None else records[:items]
    return [f"{r['title']}\n\n{r['text']}" for r in chosen if r["text"].strip()]


def pieces(token_ids: list[int], max_length: int) -> list[list[int]]:
    """Consecutive pieces of at most `max_length` tokens: every token is trained, none dropped."""
    return [token_ids[k:k + max_length] for k in range(0, len(token_ids), max_length)]


def tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return [ids + [tokenizer.eos_token_id] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def batches(documents: list[list[int]], settings: TrainSettings, rng: random.Random, pad_id: int):
    """Shuffled batches of (input_ids, attention_mask, position_ids, labels, trained tokens).

    Padded: one piece per row, padding masked out (attention and loss).
    Packed: whole pieces laid end to end in rows of at most `max_length` (first fit); position
    ids restart at every document, which makes transformers attend within each document only
    (no attention across documents), and no label crosses a document boundary.
    """
    import torch

    order = list(range(len(documents)))
    rng.shuffle(order)
    rows_of = [piece for i in order for piece in pieces(documents[i], settings.max_length)]
    if not settings.packing:
        for start in range(0, len(rows_of), settings.batch_size):
            chunk = rows_of[start:start + settings.batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), pad_id)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for k, row in enumerate(chunk):
                ids[k, :len(row)], mask[k, :len(row)] = torch.tensor(row), 1
            labels = ids.masked_fill(mask == 0, -100)
            positions = torch.arange(width).expand(len(chunk), -1)
            yield ids, mask, positions, labels, int((labels[:, 1:] != -100).sum())
        return
    rows: list[list[tuple[int, int]]] = []  # (token, position); position 0 starts a document
    for piece in rows_of:  # first fit: a piece goes whole into the first row with room for it
        row = next((r for r in rows if len(r) + len(piece) <= settings.max_length), None)
        if row is None:
            rows.append(row := [])
        row.extend((token, position) for position, token in enumerate(piece))
    for start in range(0, len(rows), settings.batch_size):
        chunk = rows[start:start + settings.batch_size]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), pad_id)
        positions = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), width), -100)
        for k, row in enumerate(chunk):
            ids[k, :len(row)] = torch.tensor([t for t, _ in row])
            # padding of a short last row is its own "document" (positions restart), trained on nothing
            positions[k] = torch.tensor([p for _, p in row] + list(range(width - len(row))))
            labels[k, :len(row)] = torch.tensor([-100 if p == 0 else t for t, p in row])
        yield ids, None, positions, labels, int((labels[:, 1:] != -100).sum())


# ---------------------------------------------------------------- model
def load_model(model_dir: str, settings: TrainSettings):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=settings.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = getattr(torch, settings.compute_dtype)
    kwargs = {"trust_remote_code": settings.trust_remote_code, "dtype": dtype}
    if settings.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = "cuda:0" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if settings.method == "lora" and torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer


def freeze_base(model, checkpointing: bool):
    """The base stays frozen in its own dtype. peft's `prepare_model_for_kbit_training` would also upcast every
    bf16 parameter to fp32: the embeddings and an untied lm_head of an 8B model (2 x 2.5 GB for Qwen3-8B) and,
    through them, the logits of every micro-batch (4 x 2048 x 151,936 x 4 bytes = 5 GB); LoRA trains fine
    against a bf16 base, as QLoRA's own recipe computes in bf16."""
    for param in model.parameters():
        param.requires_grad = False
    if checkpointing:
        # non-reentrant checkpointing needs no input-embedding hook to carry gradients through frozen layers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def add_adapter(model, settings: TrainSettings):
    from peft import LoraConfig, get_peft_model

    model = freeze_base(model, settings.checkpointing)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.lora_alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.target_modules), use_rslora=settings.scaling == "rslora",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


# ---------------------------------------------------------------- the loop
def train(model_dir: str, compressed_path: str, out_dir: str, settings: TrainSettings, threads: int = 1) -> dict:
    import torch
    from transformers import set_seed

    torch.set_num_threads(max(1, threads))
    set_seed(settings.seed)
    texts = training_texts(read_jsonl(compressed_path), settings.items)
    if not texts:
        raise StageError(f"{compressed_path}: no non-empty training text")
    model, tokenizer = load_model(model_dir, settings)
    documents = tokenize(tokenizer, texts)
    model = add_adapter(model, settings)
    device = next(model.parameters()).device
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    n_batches = sum(1 for _ in batches(documents, settings, random.Random(0), tokenizer.pad_token_id))
    per_epoch, total_steps, warmup = schedule_steps(n_batches, settings.grad_accum, settings.epochs,
                                                    settings.warmup_ratio)
    if total_steps <= warmup:
        raise StageError(f"train: {total_steps} optimizer steps do not exceed the {warmup} warm-up steps "
                         "(raise train.epochs or lower train.warmup_ratio/batch_size/grad_accum)")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total_steps))
    log.info("%d texts -> %d batches/epoch; %d optimizer steps (%d warm-up), peak lr %g, LoRA scaling %.3g, "
             "gradient checkpointing %s", len(texts), n_batches, total_steps, warmup, settings.lr,
             settings.lora_scaling, "on" if settings.checkpointing else "off")

    model.train()
    rng = random.Random(settings.seed)
    losses, lrs, tokens_seen, steps, started = [], [], 0, 0, time.perf_counter()
    for epoch in range(settings.epochs):
        epoch_batches = list(batches(documents, settings, rng, tokenizer.pad_token_id))
        for k, (ids, mask, positions, labels, n_tokens) in enumerate(epoch_batches):
            group = min(settings.grad_accum, len(epoch_batches) - (k // settings.grad_accum) * settings.grad_accum)
            out = model(input_ids=ids.to(device), attention_mask=None if mask is None else mask.to(device),
                        position_ids=positions.to(device), labels=labels.to(device))
            (out.loss / group).backward()
            tokens_seen += n_tokens
            losses.append(round(out.loss.item(), 4))
            if (k + 1) % settings.grad_accum == 0 or k + 1 == len(epoch_batches):
                lrs.append(scheduler.get_last_lr()[0])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                if steps % settings.log_every == 0 or steps == total_steps:
                    elapsed = time.perf_counter() - started
                    log.info("step %d/%d (epoch %d): loss %.4f, lr %.3g, %.0f tokens/s", steps, total_steps, epoch + 1,
                             losses[-1], lrs[-1], tokens_seen / elapsed)
    seconds = time.perf_counter() - started
    assert steps == total_steps, f"took {steps} optimizer steps, planned {total_steps}"

    summary = {
        "n_texts": len(texts),
        "n_examples": sum(len(pieces(d, settings.max_length)) for d in documents),
        "text_tokens": sum(len(d) for d in documents),
        "tokens_seen": tokens_seen,
        "trainable_params": trainable,
        "optimizer_steps": steps,
        "warmup_steps": warmup,
        "lr_reached_peak": warmup < steps,
        "learning_rates": [round(lr, 8) for lr in lrs],
        "lora_alpha": settings.lora_alpha,
        "lora_scaling": settings.lora_scaling,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "losses": losses,
        "gradient_checkpointing": settings.checkpointing,
        "train_seconds": round(seconds, 2),
        "tokens_per_second": round(tokens_seen / seconds, 1) if seconds else None,
    }
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        stable_adapter_config(Path(tmp) / "adapter_config.json")
        write_json(Path(tmp) / "lorapress_train.json", provenance("train", asdict(settings), **summary))
    return summary


def stable_adapter_config(path: Path) -> None:
    """peft writes `target_modules` from a set, in an order that Python's string hashing changes from one
    process to the next; sorted, an adapter trained again is the same bytes (its weights already are)."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


# ---------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress train")
    parser.description = "train one LoRA/QLoRA adapter on one condition's text"
    parser.add_argument("--model", required=True, help="model directory or hub id")
    parser.add_argument("--text", required=True, help="the condition's compressed items (JSON lines)")
    parser.add_argument("--out", required=True, help="adapter directory")
    parser.add_argument("--settings", type=parse_json_arg, required=True,
                        help="config `train` (without seeds) plus rank, items, seed, compute_dtype, reference_rank, "
                             "trust_remote_code, as JSON")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from .devices import claim_gpu

    claim_gpu()  # before anything touches CUDA: a card of its own when jobs share an allocation
    summary = train(args.model, args.text, args.out, TrainSettings.from_dict(args.settings), threads=args.threads)
    log.info("trained %s: loss %.3f -> %.3f in %.1f s (%d steps, %d tokens seen)", args.out, summary["loss_first"],
             summary["loss_last"], summary["train_seconds"], summary["optimizer_steps"], summary["tokens_seen"])
