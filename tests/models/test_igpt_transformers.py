"""OpenAI's ImageGPT in the transformers format, loaded into vitlight and checked against transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlight.errors import CheckpointError
from vitlight.models.igpt import IGPTConfig, ImageGPT, from_transformers

transformers = pytest.importorskip("transformers")

SIDE = 8  # 8x8 images: 64 positions
COLOURS = 16


def save_random_imagegpt(folder, seed: int = 0, safe_serialization: bool = True, side: int = SIDE):
    """A small random ImageGPTForCausalImageModeling and a processor with random clusters, saved to `folder`."""
    torch.manual_seed(seed)
    config = transformers.ImageGPTConfig(
        vocab_size=COLOURS + 1,
        n_positions=side * side,
        n_embd=32,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.ImageGPTForCausalImageModeling(config).eval()
    with torch.no_grad():  # every parameter random, norms' gains included, so that no mapping error hides
        for name, parameter in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                parameter.uniform_(0.5, 1.5)
            else:
                parameter.normal_(0.0, 0.2)
    model.save_pretrained(folder, safe_serialization=safe_serialization)
    clusters = np.random.default_rng(seed).uniform(-1, 1, (COLOURS, 3)).astype(np.float32)
    processor = transformers.ImageGPTImageProcessor(clusters=clusters, size={"height": side, "width": side})
    processor.save_pretrained(folder)
    return model, processor


def _tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, COLOURS, (batch, length), generator=torch.Generator().manual_seed(seed))


def _sos(batch: int) -> torch.Tensor:
    return torch.full((batch, 1), COLOURS, dtype=torch.long)


@pytest.mark.parametrize("safe_serialization", [True, False])
def test_next_pixel_logits_match_transformers(tmp_path, safe_serialization):
    theirs, _ = save_random_imagegpt(tmp_path, safe_serialization=safe_serialization)
    ours, palette = from_transformers(tmp_path)
    assert ours.cfg.norm == "rmsnorm" and ours.cfg.activation == "quick_gelu" and ours.cfg.sos_in_token_embedding
    assert palette.size == COLOURS
    tokens = _tokens(3, SIDE * SIDE)
    with torch.no_grad():
        expected = theirs(input_ids=torch.cat([_sos(3), tokens[:, :-1]], dim=1)).logits
        got = ours(tokens)
    assert got.shape == expected.shape == (3, SIDE * SIDE, COLOURS)
    difference = (got - expected).abs().max().item()
    assert difference < 1e-4, f"largest logit difference {difference:.2e}"
    assert expected.abs().max() > 1.0  # logits far from zero: the comparison means something


def test_greedy_completions_match_transformers_generate(tmp_path):
    theirs, _ = save_random_imagegpt(tmp_path, seed=3)
    ours, _ = from_transformers(str(tmp_path))
    prefix = _tokens(2, SIDE * SIDE // 2, seed=5)
    inputs = torch.cat([_sos(2), prefix], dim=1)
    with torch.no_grad():  # an explicit mask: generate would otherwise mask tokens equal to pad_token_id
        expected = theirs.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            max_length=SIDE * SIDE + 1,
            do_sample=False,
            pad_token_id=COLOURS,
        )[:, 1:]
    got = ours.generate(prefix, SIDE * SIDE, temperature=0.0)
    assert torch.equal(got, expected)
    assert len(torch.unique(got[:, prefix.shape[1] :])) > 1  # not a constant completion


def test_palette_quantizes_like_the_processor(tmp_path):
    _, processor = save_random_imagegpt(tmp_path)
    _, palette = from_transformers(tmp_path)
    images = np.random.default_rng(7).integers(0, 256, (4, SIDE, SIDE, 3), dtype=np.uint8)
    expected = processor(list(images), return_tensors="pt")["input_ids"]
    assert torch.equal(palette.quantize(images), expected)


def test_default_architecture_is_unchanged():
    cfg = IGPTConfig(vocab_size=8, n_positions=16, n_layer=1, n_embd=16, n_head=2)
    model = ImageGPT(cfg)
    assert isinstance(model.blocks[0].ln_1, torch.nn.LayerNorm) and isinstance(model.blocks[0].mlp[1], torch.nn.GELU)
    assert model.sos is not None and model.tok_emb.num_embeddings == 8


def test_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="pass the local folder") as error:
        from_transformers("openai/imagegpt-nonexistent-test")
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        from_transformers(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        from_transformers(tmp_path / "empty")
