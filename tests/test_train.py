"""Training data and schedule, pinned on hand-computed cases (no model needed)."""

import json
import random

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import PreTrainedTokenizerFast

from lorapress.io import StageError
from lorapress.train import (TrainSettings, batches, lr_factor, pieces, schedule_steps, stable_adapter_config,
                             tokenize, training_texts)

WORDS = "<pad> the bridge opened in 1897 has seven arches town founded river <eos>".split()


@pytest.fixture
def tokenizer():
    model = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    model.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=model, eos_token="<eos>", pad_token="<pad>")


TEXTS = ["the bridge opened in 1897", "the bridge has seven arches", "town founded", "river"]


def settings(**overrides) -> TrainSettings:
    values = dict(method="lora", compute_dtype="float32", rank=8, alpha=16, scaling="fixed", reference_rank=16,
                  dropout=0.0, target_modules=["q_proj"], lr=1e-3, epochs=1, batch_size=2, grad_accum=1,
                  max_length=16, warmup_ratio=0.1, weight_decay=0.0, packing=False, gradient_checkpointing="auto", log_every=10, seed=0,
                  items=None, trust_remote_code=False)
    return TrainSettings(**{**values, **overrides})


def trained(out) -> int:
    return sum(n for *_, n in out)


def test_padded_batches_mask_padding_out_of_the_loss(tokenizer):
    docs = tokenize(tokenizer, TEXTS)
    out = list(batches(docs, settings(), random.Random(0), tokenizer.pad_token_id))
    assert len(out) == 2
    for _, mask, _, labels, n in out:
        assert ((labels == -100) == (mask == 0)).all()
        assert n == int((labels[:, 1:] != -100).sum())
    # every token after each row's first is a target: 5+5+2+1 words + 4 EOS, minus one first token per row
    assert trained(out) == sum(len(t.split()) + 1 for t in TEXTS) - len(TEXTS)


def test_long_items_are_cut_into_pieces_never_truncated(tokenizer):
    """The old padded batches cut every text at max_length: original_text lost its tail while summaries fit."""
    docs = tokenize(tokenizer, TEXTS)
    assert pieces(docs[0], 4) == [docs[0][:4], docs[0][4:]]
    out = list(batches(docs, settings(max_length=4, batch_size=8), random.Random(0), tokenizer.pad_token_id))
    rows = [row for _, mask, *_ in out for row in mask.sum(dim=1).tolist()]
    assert sorted(rows) == sorted([4, 2, 4, 2, 3, 2])  # 6,6,3,2 tokens -> pieces of at most 4, all kept
    assert sum(rows) == sum(len(d) for d in docs)


def test_packed_rows_keep_attention_inside_each_item(tokenizer):
    docs = tokenize(tokenizer, TEXTS)  # 6, 6, 3, 2 tokens = 17
    out = list(batches(docs, settings(max_length=8, batch_size=8, packing=True), random.Random(0),
                       tokenizer.pad_token_id))
    (ids, mask, positions, labels, n), = out
    assert mask is None and ids.shape[0] == 3  # 6, 6, 3, 2 tokens in rows of 8, whole: 6+2 | 6 | 3, or alike
    for row_pos, row_labels in zip(positions.tolist(), labels.tolist()):
        for k, (p, label) in enumerate(zip(row_pos, row_labels)):
            if p == 0 and k > 0:  # a document starts mid-row: its first token is no target of the previous one
                assert label == -100
    # positions restart at every document (transformers then attends within each document only): read
    # row by row, the positions are 0..len-1 of each document in turn, then the last row's padding
    lengths = []
    for row_ids, row_pos in zip(ids.tolist(), positions.tolist()):
        real = [p for t, p in zip(row_ids, row_pos) if t != tokenizer.pad_token_id]
        starts = [k for k, p in enumerate(real) if p == 0] + [len(real)]
        lengths += [b - a for a, b in zip(starts, starts[1:])]
        assert real == [p for a, b in zip(starts, starts[1:]) for p in range(b - a)]
    assert sorted(lengths) == [2, 3, 6, 6]  # every document whole, in one row
    assert n == int((labels[:, 1:] != -100).sum()) == 17 - 4  # every token but each document's first


def test_schedule_counts_the_steps_taken_and_never_starts_at_zero():
    """Old: scheduler sized ceil(n/accum) x epochs while accumulation spanned epochs; warm-up was absolute
    and the first step had LR 0 (one step at LR 0 leaves LoRA B at zero: an exact no-op adapter)."""
    assert schedule_steps(n_batches=5, grad_accum=2, epochs=3, warmup_ratio=0.1) == (3, 9, 0)
    per_epoch, total, warmup = schedule_steps(n_batches=100, grad_accum=1, epochs=4, warmup_ratio=0.1)
    assert (per_epoch, total, warmup) == (100, 400, 40)
    factors = [lr_factor(s, warmup, total) for s in range(total)]
    assert factors[0] == pytest.approx(1 / 41) and factors[0] > 0
    assert factors[warmup] == 1.0 and max(factors) == 1.0
    assert factors[-1] == pytest.approx(1 / 360) and min(factors) > 0
    assert lr_factor(0, 0, 1) == 1.0  # a single step trains at the peak


def test_warmup_is_a_ratio_so_small_tiers_reach_the_peak():
    """With the paper's absolute 100 warm-up steps, a 50-item tier ended at 0.12x its peak LR."""
    for n_batches in (13, 125, 1250):  # 50, 500, 5000 items at batch 4
        _, total, warmup = schedule_steps(n_batches, 1, 4, 0.1)
        assert warmup < total and max(lr_factor(s, warmup, total) for s in range(total)) == 1.0


def test_settings_have_no_defaults_and_reject_unknown_keys():
    values = json.loads(json.dumps(settings().__dict__))
    assert TrainSettings.from_dict(values) == settings()
    with pytest.raises(StageError, match="unknown keys \\['rnak'\\]"):
        TrainSettings.from_dict({**values, "rnak": 4})
    missing = {k: v for k, v in values.items() if k != "lr"}
    with pytest.raises(StageError, match="missing keys \\['lr'\\]"):
        TrainSettings.from_dict(missing)


def test_lora_scaling_per_mode():
    assert settings(rank=4, alpha=16, scaling="fixed").lora_scaling == 4.0  # alpha / r
    assert settings(rank=4, alpha=16, scaling="proportional", reference_rank=16).lora_scaling == 1.0
    assert settings(rank=16, alpha=16, scaling="proportional", reference_rank=16).lora_scaling == 1.0
    assert settings(rank=16, alpha=16, scaling="rslora").lora_scaling == 4.0  # alpha / sqrt(r)


def test_training_texts_take_the_first_items_with_titles():
    records = [{"title": f"T{i}", "text": f"text {i}"} for i in range(5)] + [{"title": "E", "text": " "}]
    assert training_texts(records, 2) == ["T0\n\ntext 0", "T1\n\ntext 1"]
    assert len(training_texts(records, None)) == 5  # empty texts are skipped


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised model of Qwen3's architecture (untied lm_head, as Qwen3-8B), in bf16."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    config = Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, vocab_size=len(WORDS) + 64, tie_word_embeddings=False,
                         max_position_embeddings=128)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    path = tmp_path_factory.mktemp("tiny-qwen3")
    model.save_pretrained(path)
    return path


def test_qlora_keeps_the_base_in_its_dtype_and_checkpoints_activations(tiny_model_dir):
    """Old: peft's prepare_model_for_kbit_training upcast the embeddings and the untied lm_head to fp32 (5 GB on
    Qwen3-8B, and fp32 logits), and gradient checkpointing was off: an 8B model at 4 x 2048 tokens ran out of
    memory. A training step must still reach the adapter."""
    import torch

    from lorapress.train import add_adapter, load_model

    s = settings(method="qlora", compute_dtype="bfloat16", target_modules=["q_proj", "v_proj"])
    assert s.checkpointing and not settings(method="lora").checkpointing
    assert settings(method="lora", gradient_checkpointing="on").checkpointing
    model, _ = load_model(str(tiny_model_dir), s)
    model = add_adapter(model, s)
    base = model.get_base_model()
    assert base.get_input_embeddings().weight.dtype == torch.bfloat16
    assert base.get_output_embeddings().weight.dtype == torch.bfloat16
    assert base.is_gradient_checkpointing
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    model.train()
    ids = torch.randint(0, len(WORDS), (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_an_adapters_config_lists_its_target_modules_in_one_order(tmp_path):
    """peft writes them from a set (an order that changes with each process's string hashing)."""
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({"r": 8, "target_modules": ["v_proj", "q_proj", "o_proj", "k_proj"]}))
    stable_adapter_config(path)
    assert path.read_text() == json.dumps({"r": 8, "target_modules": ["k_proj", "o_proj", "q_proj", "v_proj"]},
                                          indent=2, sort_keys=True)
