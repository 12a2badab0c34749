"""GPU memory a job needs, estimated from the model's config.json: pure arithmetic, no torch.

`lorapress check` compares these estimates with the GPU's memory before a job is submitted;
scripts/gpu_smoke.py measures the same quantities (torch.cuda.max_memory_allocated) so the
estimates can be checked against a real GPU. Every figure is in GiB (2**30 bytes).

Training a QLoRA adapter holds:
- the base weights: every linear layer of the decoder in nf4 (4 bits) with double-quantised
  block statistics; embeddings, an untied lm_head and the norms stay unquantised, in bf16 or, after
  peft's `prepare_model_for_kbit_training` (which lorapress train calls), upcast to fp32;
- the LoRA parameters (fp32) with their gradients and AdamW's two moments: 16 bytes per parameter;
- the activations one micro-batch keeps for the backward pass (see `activation_bytes_per_token`);
- the logits of one micro-batch: bf16 out of lm_head plus the fp32 copy the loss upcasts to.

A vLLM engine holds the bf16 weights, the KV cache and one buffer per LoRA slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 2 ** 30
BF16, FP32 = 2, 4
# QLoRA (Dettmers et al. 2023, arXiv 2305.14314, §3 "Double Quantization"): NF4 stores 4 bits per weight
# plus one absmax per block of 64; double quantisation stores those absmax values in 8 bits with one fp32
# constant per 256 blocks: 8/64 + 32/(64·256) = 0.127 bits per parameter, instead of 32/64 = 0.5.
NF4_BYTES_PER_PARAM = (4 + 8 / 64 + 32 / (64 * 256)) / 8
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """The decoder's dimensions, as a Llama/Qwen-style config.json names them."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool

    @classmethod
    def from_config(cls, config: dict) -> "ModelShape":
        """From a config.json dict; head_dim defaults to hidden_size / num_attention_heads, as in transformers."""
        try:
            heads = int(config["num_attention_heads"])
            return cls(hidden_size=int(config["hidden_size"]), num_layers=int(config["num_hidden_layers"]),
                       num_heads=heads, num_kv_heads=int(config.get("num_key_value_heads") or heads),
                       head_dim=int(config.get("head_dim") or config["hidden_size"] // heads),
                       intermediate_size=int(config["intermediate_size"]), vocab_size=int(config["vocab_size"]),
                       tied_embeddings=bool(config.get("tie_word_embeddings", False)))
        except KeyError as exc:
            raise ValueError(f"config.json: key {exc.args[0]!r} missing (not a decoder config this estimate "
                             "knows)") from None

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def module_dims(self, module: str) -> tuple[int, int]:
        """(in_features, out_features) of one linear module of a decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        dims = {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        if module not in dims:
            raise ValueError(f"unknown target module {module!r}; known: {', '.join(LINEAR_MODULES)}")
        return dims[module]

    @property
    def linear_params(self) -> int:
        """Parameters of all decoder linear layers (what QLoRA quantises)."""
        return self.num_layers * sum(a * b for a, b in map(self.module_dims, LINEAR_MODULES))

    @property
    def embedding_params(self) -> int:
        """Input embeddings plus an untied lm_head (never quantised)."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def norm_params(self) -> int:
        """Two RMSNorms per layer, the final norm, and Qwen3's per-head q/k norms (tiny either way)."""
        return self.num_layers * (2 * self.hidden_size + 2 * self.head_dim) + self.hidden_size

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.norm_params


def gib(n_bytes: float) -> float:
    return n_bytes / GIB


# ---------------------------------------------------------------- weights
def weights_bf16_gib(shape: ModelShape) -> float:
    return gib(shape.params * BF16)


def weights_nf4_gib(shape: ModelShape, *, upcast: bool = False) -> float:
    """QLoRA base: linear layers in nf4 with double quantisation; the rest in bf16, as lorapress train keeps it
    (upcast=True: fp32, as peft's prepare_model_for_kbit_training would make it)."""
    rest = (shape.embedding_params + shape.norm_params) * (FP32 if upcast else BF16)
    return gib(shape.linear_params * NF4_BYTES_PER_PARAM + rest)


# ---------------------------------------------------------------- LoRA
def lora_params(shape: ModelShape, rank: int, targets) -> int:
    """A (rank × in) plus B (out × rank) for every target module of every layer."""
    return shape.num_layers * sum(rank * (a + b) for a, b in map(shape.module_dims, targets))


def lora_train_gib(shape: ModelShape, rank: int, targets) -> float:
    """LoRA weights, their gradients and AdamW's two moments, all fp32: 16 bytes per parameter."""
    return gib(lora_params(shape, rank, targets) * 4 * FP32)


# ---------------------------------------------------------------- activations
def activation_bytes_per_token(shape: ModelShape, targets=(), dropout: bool = False) -> int:
    """Bytes one decoder layer keeps for the backward pass per token, in bf16, with SDPA/flash attention.

    Bookkeeping after Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
    Models", arXiv 2205.05198, §4.1), who count s·b·h·(34 + 5·a·s/h) bytes per GPT layer. Flash/SDPA
    attention keeps no s×s scores, so their 5·a·s/h term is gone; there is no dropout in the base model;
    a gated (SwiGLU) MLP and grouped-query attention replace GPT's MLP and heads. Per token, 2 bytes each:
      the inputs of the two RMSNorms             2 × h
      the input of q/k/v (the norm's output)     h
      q, k and v for the attention kernel        q_dim + 2 × kv_dim
      the input of o_proj (attention output)     q_dim
      the input of gate/up (the norm's output)   h
      gate and up outputs, SiLU(gate), and the
      input of down_proj (their product)         4 × I
    = 2 × (4h + 2·q_dim + 2·kv_dim + 4I). With LoRA dropout (p > 0) every target module also keeps its
    dropped-out input (bf16) and the dropout mask (1 byte): 3 × in_features more.
    Left out (small): RoPE's and Qwen3's q/k-norm intermediates, softmax statistics, LoRA's rank-r outputs.
    """
    h, i = shape.hidden_size, shape.intermediate_size
    per_token = BF16 * (4 * h + 2 * shape.q_dim + 2 * shape.kv_dim + 4 * i)
    if dropout:
        per_token += sum(3 * shape.module_dims(m)[0] for m in targets)
    return per_token


def activations_gib(shape: ModelShape, batch: int, length: int, *, checkpointing: bool, targets=(),
                    dropout: bool = False) -> float:
    """Activations of one micro-batch of `batch` rows × `length` tokens.

    Without checkpointing every layer keeps `activation_bytes_per_token`. With (per decoder layer, as
    transformers' gradient_checkpointing_enable does) each layer keeps only its input, h bf16 values per
    token, and one layer's full set is rebuilt at a time during the backward pass.
    """
    tokens = batch * length
    layer = activation_bytes_per_token(shape, targets, dropout) * tokens
    if not checkpointing:
        return gib(shape.num_layers * layer)
    return gib(shape.num_layers * BF16 * shape.hidden_size * tokens + layer)


def logits_gib(shape: ModelShape, batch: int, length: int) -> float:
    """Logits of one micro-batch: bf16 out of lm_head (2 bytes) plus the fp32 copy the loss upcasts to
    (4 bytes) per vocabulary entry per token. The cross-entropy's own fp32 log-softmax can add another 4
    bytes at the peak; gpu_smoke.py measures the real peak."""
    return gib(batch * length * shape.vocab_size * (BF16 + FP32))


@dataclass(frozen=True)
class TrainMemory:
    weights: float
    lora: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.lora + self.activations + self.logits

    def as_dict(self) -> dict:
        return {"weights_gib": self.weights, "lora_and_adamw_gib": self.lora, "activations_gib": self.activations,
                "logits_gib": self.logits, "total_gib": self.total}


def train_memory(shape: ModelShape, *, method: str, rank: int, targets, batch: int, length: int,
                 checkpointing: bool, dropout: bool = False) -> TrainMemory:
    """One training job (qlora: nf4 base, embeddings and norms in bf16; lora: bf16 base)."""
    weights = weights_nf4_gib(shape) if method == "qlora" else weights_bf16_gib(shape)
    return TrainMemory(weights=weights, lora=lora_train_gib(shape, rank, targets),
                       activations=activations_gib(shape, batch, length, checkpointing=checkpointing,
                                                   targets=targets, dropout=dropout),
                       logits=logits_gib(shape, batch, length))


# ---------------------------------------------------------------- vLLM
def kv_bytes_per_token(shape: ModelShape, dtype_bytes: int = BF16) -> int:
    """K and V of every layer: 2 × layers × kv_heads × head_dim × 2 bytes (bf16)."""
    return 2 * shape.num_layers * shape.kv_dim * dtype_bytes


def kv_cache_gib(shape: ModelShape, tokens: int) -> float:
    return gib(kv_bytes_per_token(shape) * tokens)


def lora_slots_gib(shape: ModelShape, max_loras: int, max_rank: int, modules=LINEAR_MODULES) -> float:
    """vLLM's preallocated LoRA buffers: max_loras × max_rank × Σ(in + out) of the wrapped modules × 2 bytes.
    vLLM wraps every linear layer it supports LoRA on, whatever an adapter targets: pass all seven."""
    return gib(max_loras * lora_params(shape, max_rank, modules) * BF16)


@dataclass(frozen=True)
class EngineMemory:
    weights: float
    kv_cache: float  # max_num_seqs full-length sequences
    lora_slots: float

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.lora_slots

    def as_dict(self) -> dict:
        return {"weights_gib": self.weights, "kv_cache_gib": self.kv_cache, "lora_slots_gib": self.lora_slots,
                "total_gib": self.total}


def engine_memory(shape: ModelShape, *, max_num_seqs: int, max_model_len: int, max_loras: int = 0,
                  max_lora_rank: int = 16) -> EngineMemory:
    """A vLLM engine whose every sequence slot holds a full max_model_len context."""
    return EngineMemory(weights=weights_bf16_gib(shape), kv_cache=kv_cache_gib(shape, max_num_seqs * max_model_len),
                        lora_slots=lora_slots_gib(shape, max_loras, max_lora_rank) if max_loras else 0.0)


def sequences_that_fit(shape: ModelShape, free_gib: float, max_model_len: int) -> int:
    """Full-length sequences a KV cache of `free_gib` holds at once."""
    if free_gib <= 0:
        return 0
    return math.floor(free_gib * GIB / (kv_bytes_per_token(shape) * max_model_len))
