"""Shape and architecture options of an ImageGPT model, and the paper's size presets."""

from __future__ import annotations

from dataclasses import dataclass

NORM_KINDS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("gelu", "quick_gelu")


@dataclass
class IGPTConfig:
    """Shape of an ImageGPT model.

    Args:
        vocab_size: palette size; the LM head has this many outputs.
        n_positions: longest token sequence, H*W of the largest image (1024 for 32x32).
        n_layer: number of transformer blocks.
        n_embd: width of the residual stream.
        n_head: attention heads; must divide ``n_embd``.
        mlp_ratio: hidden width of the MLP as a multiple of ``n_embd``.
        dropout: dropout on attention weights and residual branches.
        causal: autoregressive if True; BERT (bidirectional, extra [MASK] token) if False.
        norm: "layernorm" (vitlight's default: mean-centred, with bias) or "rmsnorm" (OpenAI's
            released models: no mean subtraction, no bias, ``x / sqrt(mean(x^2) + eps) * w``).
        norm_eps: epsilon of every norm.
        activation: MLP activation, "gelu" (exact; vitlight's default) or "quick_gelu"
            (``x * sigmoid(1.702 x)``, OpenAI's released models).
        sos_in_token_embedding: the start-of-sequence vector is row ``vocab_size`` of the token
            embedding (OpenAI's layout) instead of a separate parameter (autoregressive only).
    """

    vocab_size: int = 512
    n_positions: int = 1024
    n_layer: int = 24
    n_embd: int = 512
    n_head: int = 8
    mlp_ratio: int = 4
    dropout: float = 0.0
    causal: bool = True
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    activation: str = "gelu"
    sos_in_token_embedding: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_positions", "n_layer", "n_embd", "n_head", "mlp_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"IGPTConfig.{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"IGPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"IGPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in NORM_KINDS:
            raise ValueError(f"IGPTConfig.norm must be one of {', '.join(NORM_KINDS)}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"IGPTConfig.activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.sos_in_token_embedding and not self.causal:
            raise ValueError("IGPTConfig.sos_in_token_embedding needs the autoregressive model (causal=True)")


# (n_layer, n_embd, n_head). S/M/L/XL follow the paper's Table 1 widths and depths.
IGPT_PRESETS: dict[str, tuple[int, int, int]] = {
    "igpt-tiny": (4, 64, 4),
    "igpt-mini": (6, 128, 4),
    "igpt-s": (24, 512, 8),
    "igpt-m": (36, 1024, 8),
    "igpt-l": (48, 1536, 16),
    "igpt-xl": (60, 3072, 16),
}


def igpt_config(
    name: str,
    n_positions: int,
    vocab_size: int = 512,
    causal: bool = True,
    dropout: float = 0.0,
) -> IGPTConfig:
    """Config for a preset in `IGPT_PRESETS`.

    Parameter counts match the paper's 76M, 455M, 1362M and 6801M for S/M/L/XL (measured:
    76.71M, 455.56M, 1363.06M, 6803.47M, i.e. +0.9%, +0.1%, +0.1%, +0.04%) with the paper's
    convention: 32x32 input (``n_positions=1024``), a 512-entry palette, learned position
    embeddings, a learned SOS vector, and an LM head *not* tied to the token embedding (as
    in openai/image-gpt). vitlight's default LayerNorms carry a bias, which the released
    models' RMS-style norms omit (``norm="rmsnorm"``); that adds well under 0.1%. Counts grow
    with ``n_positions`` (igpt-s at 64x64 is +3%), so compare at 1024.
    """
    if name not in IGPT_PRESETS:
        raise ValueError(f"unknown ImageGPT preset {name!r}; valid: {', '.join(IGPT_PRESETS)}")
    n_layer, n_embd, n_head = IGPT_PRESETS[name]
    return IGPTConfig(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        dropout=dropout,
        causal=causal,
    )
