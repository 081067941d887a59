"""ImageGPT (Chen et al. 2020): a GPT-2 style transformer over palette tokens.

An image is quantized by a `Palette` to a raster-order sequence of L = H*W tokens.
The autoregressive model (``causal=True``) reads ``[SOS, x_0, ..., x_{L-2}]`` and its
logit at position t predicts x_t from x_<t only. The BERT model (``causal=False``) reads
the tokens themselves, some replaced by the [MASK] id ``vocab_size``, and attends both ways.

Sampling uses a key/value cache: `init_cache` feeds the SOS token, `forward_with_cache`
feeds further tokens and returns next-token logits, `generate` loops over both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlight.models.igpt_config import IGPTConfig


class KVCache:
    """Keys and values of every block for the input positions fed so far.

    Preallocated to ``max_length`` positions so that a sampling step writes in place.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        head_dim: int,
        max_length: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (n_layer, batch_size, n_head, max_length, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # input positions already in the cache

    @property
    def max_length(self) -> int:
        return self.k.shape[3]


class SelfAttention(nn.Module):
    def __init__(self, cfg: IGPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, causal: bool, kv: tuple[Tensor, Tensor] | None = None, start: int = 0) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hd)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        mask = None
        if kv is not None:
            # Write the new keys/values into the cache and attend to everything so far.
            k_cache, v_cache = kv  # (B, nh, max_length, hd)
            k_cache[:, :, start : start + T] = k
            v_cache[:, :, start : start + T] = v
            k, v = k_cache[:, :, : start + T], v_cache[:, :, : start + T]
            if T == 1:
                causal = False  # one query may see every cached key
            elif start > 0:
                # is_causal aligns the triangle top-left; new queries sit bottom-right.
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
                causal = False
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, nh, T, hd) -> (B, T, C)
        return self.resid_drop(self.proj(y))


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the GELU approximation of OpenAI's released ImageGPT models."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_norm(cfg: IGPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":  # no mean subtraction, no bias (OpenAI's released models)
        return nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps)


def make_activation(cfg: IGPTConfig) -> nn.Module:
    return QuickGELU() if cfg.activation == "quick_gelu" else nn.GELU()


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: IGPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.attn = SelfAttention(cfg)
        self.ln_2 = make_norm(cfg)
        hidden = cfg.mlp_ratio * cfg.n_embd
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, hidden),
            make_activation(cfg),
            nn.Linear(hidden, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )
        for projection in (self.attn.proj, self.mlp[2]):  # residual outputs: smaller init (init_module_parameters)
            projection.residual_output = True

    def forward(self, x: Tensor, causal: bool, kv: tuple[Tensor, Tensor] | None = None, start: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), causal, kv, start)
        return x + self.mlp(self.ln_2(x))


def _check_length(length: int, n_positions: int) -> None:
    if length > n_positions:
        side = math.isqrt(length)
        image = f" ({side}x{side} image)" if side * side == length else ""
        raise ValueError(
            f"sequence of {length} tokens{image} is longer than the model's {n_positions} "
            f"positions; build the model with n_positions >= {length} or use smaller images"
        )


class ImageGPT(nn.Module):
    """GPT-2 style decoder (or BERT encoder) over palette tokens; see the module docstring."""

    def __init__(self, cfg: IGPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # BERT adds a [MASK] row; OpenAI's layout keeps the SOS vector as an extra row too
        extra_row = not cfg.causal or cfg.sos_in_token_embedding
        self.tok_emb = nn.Embedding(cfg.vocab_size + int(extra_row), cfg.n_embd)
        self.pos_emb = nn.Parameter(torch.empty(cfg.n_positions, cfg.n_embd))
        if cfg.sos_in_token_embedding:
            self.register_parameter("sos", None)
        else:
            self.sos = nn.Parameter(torch.empty(cfg.n_embd))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)  # untied, as in the paper
        self._init_weights()

    def _init_weights(self) -> None:
        for module in [*self.modules()][1:] + [self]:  # own parameters last: the order of the random draws
            self.init_module_parameters(module)

    def init_module_parameters(self, module: nn.Module) -> None:
        """GPT-2's initialisation of one module's own parameters (not its children's), so that a model
        built on the meta device can be materialised piece by piece (vitlight.fsdp.BlockFSDP).

        Linear and embedding weights N(0, 0.02), biases 0, norms 1 (and bias 0); the residual output
        projections shrink with depth, N(0, 0.02 / sqrt(2 n_layer)), so the stream stays O(1);
        position embeddings N(0, 0.01), the SOS vector N(0, 0.02).
        """
        with torch.no_grad():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                residual = getattr(module, "residual_output", False)
                std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if residual else 0.02
                nn.init.normal_(module.weight, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.reset_parameters()
            elif module is self:
                nn.init.normal_(self.pos_emb, std=0.01)
                if self.sos is not None:
                    nn.init.normal_(self.sos, std=0.02)

    def materialise(self, device: torch.device | str) -> None:
        """Allocates a model built on the meta device on ``device`` and initialises it (no-op otherwise)."""
        if any(p.is_meta for p in self.parameters()):
            self.to_empty(device=device)
            self._init_weights()

    def compile_blocks(self, **options: object) -> None:
        """torch.compile each block in place (options: torch.compile's). Blocks are the code a step runs
        (callers use `features`, `ln_f` and `head` directly, which compiling this module's `__call__`
        would miss), the unit FSDP shards and activation checkpointing recomputes; they share one
        code object, so all of them reuse the first block's compiled graph."""
        for block in self.blocks:
            # a block FSDP or checkpointing has wrapped was compiled before it was wrapped
            if isinstance(block, Block) and getattr(block, "_compiled_call_impl", None) is None:
                block.compile(**options)

    def sos_vector(self) -> Tensor:
        """The learned start-of-sequence input (n_embd,)."""
        if self.cfg.sos_in_token_embedding:
            return self.tok_emb.weight[self.cfg.vocab_size]
        return self.sos

    @property
    def hidden_size(self) -> int:
        return self.cfg.n_embd

    @property
    def n_layer(self) -> int:
        return self.cfg.n_layer

    @property
    def mask_token_id(self) -> int | None:
        """Token id of [MASK] for the BERT model, None for the autoregressive one."""
        return None if self.cfg.causal else self.cfg.vocab_size

    def _inputs(self, tokens: Tensor, shift: bool) -> Tensor:
        """Input embeddings (B, L, C); with ``shift`` the sequence is [SOS, tokens[:, :-1]]."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape (batch, length), got {tuple(tokens.shape)}")
        B, L = tokens.shape
        if L == 0:
            raise ValueError("tokens must hold at least one position, got length 0")
        _check_length(L, self.cfg.n_positions)
        h = self.tok_emb(tokens[:, :-1] if shift else tokens)  # (B, L-1 or L, C)
        if shift:
            h = torch.cat([self.sos_vector().expand(B, 1, -1).to(h.dtype), h], dim=1)  # (B, L, C)
        return self.drop(h + self.pos_emb[:L])

    def _run_blocks(self, h: Tensor) -> Tensor:
        for block in self.blocks:
            h = block(h, self.cfg.causal)
        return h

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits (B, L, vocab_size) for tokens (B, L).

        Autoregressive: logits[:, t] predicts tokens[:, t] from tokens[:, :t].
        BERT: logits[:, t] predicts the original token at t (used where it was masked).
        """
        h = self._run_blocks(self._inputs(tokens, shift=self.cfg.causal))
        return self.head(self.ln_f(h))  # (B, L, V)

    def features(self, tokens: Tensor, layers: list[int] | None = None, normalize: bool = False) -> dict[int, Tensor]:
        """Hidden states (B, L, n_embd) after the chosen blocks, for linear probes.

        ``layers`` index blocks from 0 to n_layer-1 (negative indices count from the end);
        the paper numbers layers from 1, so its layer l is index l-1 here. None returns all.
        ``normalize`` applies a parameter-free LayerNorm, as the paper does before probing.
        The input is the same as in `forward`, so the autoregressive model's features never
        see the last token. Pooling over the sequence is left to the caller.
        """
        n = self.cfg.n_layer
        wanted = list(range(n)) if layers is None else list(layers)
        for i in wanted:
            if not -n <= i < n:
                raise ValueError(f"feature layer {i} is out of range for a {n}-layer model")
        wanted = [i % n for i in wanted]
        h = self._inputs(tokens, shift=self.cfg.causal)
        # Stop after the deepest wanted block; later blocks would be wasted work.
        kept: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks[: max(wanted, default=-1) + 1]):
            h = block(h, self.cfg.causal)
            if i in wanted:
                kept[i] = F.layer_norm(h, h.shape[-1:]) if normalize else h
        return {i: kept[i] for i in wanted}

    def no_weight_decay(self) -> set[str]:
        """Parameters kept out of weight decay besides biases and norms (timm's convention):
        the position embeddings and the SOS vector, as timm excludes ViT's pos_embed and cls_token."""
        return {"pos_emb"} | ({"sos"} if self.sos is not None else set())

    # ---- sampling -------------------------------------------------------------------

    def _require_causal(self, what: str) -> None:
        if not self.cfg.causal:
            raise NotImplementedError(f"{what} needs the autoregressive model (causal=True); this is a BERT model")

    def init_cache(self, batch_size: int, max_length: int | None = None) -> tuple[KVCache, Tensor]:
        """Empty cache fed with the SOS token; returns it and the logits (B, V) for x_0.

        ``max_length`` counts input positions (SOS included), at most ``n_positions``.
        """
        self._require_causal("init_cache")
        cfg = self.cfg
        max_length = cfg.n_positions if max_length is None else max_length
        _check_length(max_length, cfg.n_positions)
        ref = self.pos_emb
        cache = KVCache(
            cfg.n_layer,
            batch_size,
            cfg.n_head,
            cfg.n_embd // cfg.n_head,
            max_length,
            ref.device,
            ref.dtype,
        )
        h = (self.sos_vector() + self.pos_emb[0]).expand(batch_size, 1, -1)  # (B, 1, C)
        return cache, self._step(h, cache)[:, -1]

    def forward_with_cache(self, tokens: Tensor, cache: KVCache) -> Tensor:
        """Feed known tokens (B, T) after those in ``cache``; logits (B, T, V) for the next ones.

        After `init_cache`, feeding x_s..x_{s+T-1} returns the logits predicting
        x_{s+1}..x_{s+T}; each step computes q/k/v only for the new tokens.
        """
        self._require_causal("forward_with_cache")
        start, T = cache.length, tokens.shape[1]
        if start == 0:
            raise ValueError("the cache is empty; create it with init_cache() first")
        if start + T > cache.max_length:
            raise ValueError(
                f"feeding {T} tokens at position {start} overflows the cache of {cache.max_length} positions"
            )
        h = self.tok_emb(tokens) + self.pos_emb[start : start + T]  # (B, T, C)
        return self._step(h, cache)

    def _step(self, h: Tensor, cache: KVCache) -> Tensor:
        start = cache.length
        for i, block in enumerate(self.blocks):
            h = block(h, True, (cache.k[i], cache.v[i]), start)
        cache.length = start + h.shape[1]
        return self.head(self.ln_f(h))  # (B, T, V)

    def _last_logits_uncached(self, seq: Tensor) -> Tensor:
        """Logits (B, V) for the token after ``seq`` (B, t), recomputing the whole prefix."""
        B, t = seq.shape
        _check_length(t + 1, self.cfg.n_positions)
        h = torch.cat([self.sos_vector().expand(B, 1, -1), self.tok_emb(seq)], dim=1)  # (B, t+1, C)
        h = self._run_blocks(h + self.pos_emb[: t + 1])
        return self.head(self.ln_f(h[:, -1]))  # (B, V)

    @torch.no_grad()
    def generate(
        self,
        prefix_tokens: Tensor,
        total_length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Complete ``prefix_tokens`` (B, P) to (B, total_length) by sampling.

        ``temperature=0`` picks the most likely token (greedy). ``use_cache=False``
        recomputes the whole prefix at every step (slow; kept for benchmarks and tests).
        """
        self._require_causal("sampling")
        B, P = prefix_tokens.shape
        V = self.cfg.vocab_size
        _check_length(total_length, self.cfg.n_positions)
        if not 0 <= P <= total_length:
            raise ValueError(f"prefix of {P} tokens does not fit in total_length={total_length}")
        if top_k is not None and not 1 <= top_k <= V:
            raise ValueError(f"top_k={top_k} must be between 1 and the vocabulary size {V}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")

        out = torch.empty(B, total_length, dtype=torch.long, device=prefix_tokens.device)
        out[:, :P] = prefix_tokens
        if P == total_length:
            return out
        if use_cache:
            # Input positions needed: SOS plus every token but the last one.
            cache, logits = self.init_cache(B, max_length=total_length)
            if P > 0:
                logits = self.forward_with_cache(out[:, :P], cache)[:, -1]
        for t in range(P, total_length):
            if not use_cache:
                logits = self._last_logits_uncached(out[:, :t])
            out[:, t] = _sample(logits, temperature, top_k, generator)
            if use_cache and t + 1 < total_length:
                logits = self.forward_with_cache(out[:, t : t + 1], cache)[:, -1]
        return out


def _sample(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """One token id per row of logits (B, V)."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
