import pytest
import torch

from vitlight.models.igpt import IGPT_PRESETS, IGPTConfig, ImageGPT, igpt_config


def _model(causal: bool = True, n_positions: int = 64, vocab_size: int = 32, seed: int = 0) -> ImageGPT:
    torch.manual_seed(seed)
    cfg = IGPTConfig(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_layer=2,
        n_embd=32,
        n_head=4,
        causal=causal,
    )
    return ImageGPT(cfg).eval()


def _tokens(batch: int, length: int, vocab_size: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=g)


@pytest.mark.parametrize("t", [0, 17, 63])
def test_autoregressive_logits_depend_only_on_earlier_pixels(t: int):
    model = _model(causal=True)
    x = _tokens(2, 64)
    y = x.clone()
    y[:, t] = (y[:, t] + 1) % 32
    with torch.no_grad():
        a, b = model(x), model(y)
    # Logits at positions <= t predict x_0..x_t and must not see x_t.
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])
    if t + 1 < 64:
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def test_bert_model_is_bidirectional_and_has_a_mask_token():
    model = _model(causal=False)
    assert model.mask_token_id == 32
    x = _tokens(2, 64)
    y = x.clone()
    y[:, 40] = model.mask_token_id
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 64, 32)  # no logit for [MASK]
    assert not torch.allclose(a[:, :40], b[:, :40])
    with pytest.raises(NotImplementedError, match="autoregressive"):
        model.generate(x[:, :8], 64)


def test_kv_cache_logits_equal_full_recomputation_at_every_step():
    model = _model(n_positions=48)
    x = _tokens(3, 48)
    with torch.no_grad():
        full = model(x)  # (B, L, V); full[:, t] predicts x_t
        cache, first = model.init_cache(3)
        steps = [first]
        for t in range(47):
            steps.append(model.forward_with_cache(x[:, t : t + 1], cache)[:, -1])
        torch.testing.assert_close(torch.stack(steps, dim=1), full, atol=1e-5, rtol=0)
        # A multi-token prefill, then another chunk, lands on the same logits.
        cache, _ = model.init_cache(3)
        pre = model.forward_with_cache(x[:, :20], cache)
        more = model.forward_with_cache(x[:, 20:33], cache)
    torch.testing.assert_close(pre, full[:, 1:21], atol=1e-5, rtol=0)
    torch.testing.assert_close(more, full[:, 21:34], atol=1e-5, rtol=0)
    assert cache.length == 34


def test_generate_cached_and_uncached_agree():
    model = _model(n_positions=40)
    prefix = _tokens(2, 16)
    greedy = model.generate(prefix, 40, temperature=0.0)
    assert greedy.shape == (2, 40) and torch.equal(greedy[:, :16], prefix)
    assert torch.equal(greedy, model.generate(prefix, 40, temperature=0.0, use_cache=False))
    assert torch.equal(greedy, model.generate(prefix, 40, temperature=0.0))  # deterministic

    def sample(use_cache: bool) -> torch.Tensor:
        g = torch.Generator().manual_seed(7)
        return model.generate(prefix[:, :0], 40, top_k=5, generator=g, use_cache=use_cache)

    sampled = sample(True)
    assert torch.equal(sampled, sample(False))
    assert sampled.min() >= 0 and sampled.max() < 32


@pytest.mark.parametrize("preset", ["igpt-tiny", "igpt-mini"])
@pytest.mark.parametrize("causal", [True, False])
def test_tiny_presets_output_shape_and_no_nan(preset: str, causal: bool):
    model = ImageGPT(igpt_config(preset, n_positions=64, vocab_size=16, causal=causal))
    x = _tokens(2, 64, vocab_size=16)
    logits = model(x)
    assert logits.shape == (2, 64, 16) and torch.isfinite(logits).all()
    logits.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("resolution", [32, 48, 64])
def test_resolutions_shapes_and_features(resolution: int):
    L = resolution * resolution
    torch.manual_seed(0)
    cfg = IGPTConfig(vocab_size=16, n_positions=L, n_layer=2, n_embd=16, n_head=2)
    model = ImageGPT(cfg).eval()
    x = _tokens(1, L, vocab_size=16)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x, layers=[0, -1])
    assert logits.shape == (1, L, 16) and torch.isfinite(logits).all()
    assert sorted(feats) == [0, 1]
    for f in feats.values():
        assert f.shape == (1, L, model.hidden_size) and torch.isfinite(f).all()


def test_features_are_block_outputs():
    model = _model()
    x = _tokens(2, 64)
    with torch.no_grad():
        feats = model.features(x)
        assert sorted(feats) == list(range(model.n_layer))
        # The last block's output, through ln_f and the head, gives forward()'s logits.
        torch.testing.assert_close(model.head(model.ln_f(feats[1])), model(x))
        normed = model.features(x, layers=[0], normalize=True)[0]
    torch.testing.assert_close(normed.mean(-1), torch.zeros(2, 64), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="out of range"):
        model.features(x, layers=[2])


# Paper (Chen et al. 2020, Table 1) sizes, counted at 32x32 input and a 512 palette.
PAPER_PARAMS = {"igpt-s": 76e6, "igpt-m": 455e6, "igpt-l": 1362e6, "igpt-xl": 6801e6}


@pytest.mark.parametrize("preset", list(PAPER_PARAMS))
def test_parameter_counts_match_the_paper(preset: str):
    with torch.device("meta"):
        model = ImageGPT(igpt_config(preset, n_positions=1024, vocab_size=512))
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / PAPER_PARAMS[preset] - 1) < 0.02, f"{preset}: {n / 1e6:.1f}M"


def test_preset_names_and_unknown_preset():
    assert {"igpt-tiny", "igpt-mini", "igpt-s", "igpt-m", "igpt-l", "igpt-xl"} <= set(IGPT_PRESETS)
    with pytest.raises(ValueError, match="unknown ImageGPT preset 'igpt-xxl'; valid: igpt-tiny"):
        igpt_config("igpt-xxl", 1024)
    with pytest.raises(ValueError, match="not divisible"):
        IGPTConfig(n_embd=30, n_head=4)


def test_sequence_longer_than_positions_raises_one_line():
    model = ImageGPT(igpt_config("igpt-tiny", n_positions=1024, vocab_size=16))
    with pytest.raises(ValueError) as e:
        model(torch.zeros(1, 4096, dtype=torch.long))
    assert str(e.value).startswith("sequence of 4096 tokens (64x64 image) is longer than the model's 1024 positions;")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="longer than the model's 1024 positions"):
        model.generate(torch.zeros(1, 8, dtype=torch.long), 2048)


def test_top_k_and_temperature_errors():
    model = _model()
    prefix = _tokens(1, 4)
    with pytest.raises(ValueError, match="top_k=33 must be between 1 and the vocabulary size 32"):
        model.generate(prefix, 8, top_k=33)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prefix, 8, temperature=-1.0)
    with pytest.raises(ValueError, match="does not fit"):
        model.generate(_tokens(1, 10), 8)


@pytest.mark.parametrize("sos_in_token_embedding", [False, True])
def test_weight_decay_skips_position_embeddings_sos_norms_and_biases(sos_in_token_embedding: bool):
    from vitlight.tasks.optim import weight_decay_groups

    torch.manual_seed(0)
    model = ImageGPT(
        IGPTConfig(
            vocab_size=8,
            n_positions=16,
            n_layer=2,
            n_embd=16,
            n_head=2,
            norm="rmsnorm" if sos_in_token_embedding else "layernorm",
            sos_in_token_embedding=sos_in_token_embedding,
        )
    )
    decay, no_decay = weight_decay_groups(model)
    names = {id(p): name for name, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {
        "pos_emb",
        "ln_f.weight",
        "blocks.0.ln_1.weight",
        "blocks.1.attn.qkv.bias",
        "blocks.0.mlp.0.bias",
    } <= skipped
    assert ("sos" in skipped) != sos_in_token_embedding
    assert {"tok_emb.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.2.weight", "head.weight"} <= decayed
    assert skipped | decayed == set(names.values()) and not skipped & decayed
    torch.optim.AdamW(weight_decay_groups(model), lr=1e-3, weight_decay=0.1)  # accepted as-is
