"""Linear probes: the L-BFGS logistic regression, per-layer features of iGPT and timm models, LinearProbe."""

from __future__ import annotations

import pytest
import torch

from vitlight.errors import ConfigError
from vitlight.models.palette import Palette
from vitlight.tasks.classification import ImageClassifier
from vitlight.tasks.pixel_pretrain import PixelPretrainer
from vitlight.tasks.probe import LayerFeatures, LinearProbe, fit_logistic_regression


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def blobs(
    n: int, centres: torch.Tensor, spread: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(n) % len(centres)
    return centres[labels] + spread * torch.randn(n, centres.shape[1], generator=generator), labels


def test_logistic_regression_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 3
    (x, y), (xv, yv), (xt, yt) = (blobs(n, centres, 0.5, g) for n in (200, 80, 80))
    fit = fit_logistic_regression(x, y, xv, yv, num_classes=4, l2_grid=[1e-3, 1e-1])
    assert fit.val_acc == 1.0
    assert fit.accuracy(xt.double(), yt) >= 0.99
    assert set(fit.val_by_l2) == {1e-3, 1e-1}
    assert fit.val_by_l2[fit.l2] == max(fit.val_by_l2.values())


def test_logistic_regression_l2_is_chosen_on_validation():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(2, 200, generator=g) * 0.1
    x, y = blobs(40, centres, 1.0, g)  # few noisy samples, many features
    xv, yv = blobs(400, centres, 1.0, g)
    strong = fit_logistic_regression(x, y, xv, yv, num_classes=2, l2_grid=[1.0], max_iter=100)
    weak = fit_logistic_regression(x, y, xv, yv, num_classes=2, l2_grid=[1e-5], max_iter=100)
    both = fit_logistic_regression(x, y, xv, yv, num_classes=2, l2_grid=[1e-5, 1.0], max_iter=100)
    assert strong.weight.norm() < weak.weight.norm()
    scores = both.val_by_l2
    assert both.val_acc == max(scores.values())
    assert both.l2 == (1.0 if scores[1.0] >= scores[1e-5] else 1e-5)  # a tie goes to the stronger L2


def igpt() -> PixelPretrainer:
    model = PixelPretrainer(
        preset="igpt-tiny", n_layer=3, palette_size=8, image_size=4, channels=1, num_classes=2
    ).eval()
    model.set_palette(Palette.grey(8))
    return model


def vit() -> ImageClassifier:
    return ImageClassifier(
        model_name="vit_tiny_patch16_224",
        num_classes=2,
        image_size=16,
        channels=3,
        lr_scheduler=None,
        model_kwargs={"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
    ).eval()


def test_igpt_layer_features_are_pooled_per_block():
    features = LayerFeatures(igpt())
    assert features.n_layers == 3
    assert features.layer_indices("all") == [0, 1, 2]
    assert features.layer_indices("middle") == [1]
    assert features.layer_indices([-1, 0]) == [0, 2]
    out = features(torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8), [0, 2])  # the uint8 pixels loaders serve
    assert set(out) == {0, 2} and out[0].shape == (5, 64)
    with pytest.raises(ConfigError, match="probe layer 3 is out of range for the 3-layer igpt-tiny"):
        features.layer_indices([3])
    with pytest.raises(ConfigError, match="class token"):
        LayerFeatures(igpt(), pool="cls")


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_vit_layer_features(pool):
    features = LayerFeatures(vit(), pool=pool)
    assert features.n_layers == 2
    out = features(torch.randn(3, 3, 16, 16), [0, 1])
    assert out[1].shape == (3, 32)
    assert not torch.equal(out[0], out[1])


def test_linear_probe_freezes_its_source_and_rebuilds_from_its_hparams():
    probe = LinearProbe(preset="igpt-tiny", palette_size=8, num_classes=3, image_size=4, channels=1)
    assert probe.layer == 2  # the middle of igpt-tiny's 4 blocks
    trainable = {name for name, p in probe.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    probe.train()
    assert not probe.source.training
    with pytest.raises(ConfigError, match="out of range"):
        LinearProbe(layer=7, preset="igpt-tiny", palette_size=8, image_size=4, channels=1)
    source = {"class_path": "vitlight.tasks.classification.ImageClassifier", "init_args": dict(vit().hparams)}
    rebuilt = LinearProbe(source=source, num_classes=2, image_size=16, channels=3)
    assert rebuilt.layer == 1 and rebuilt.head.in_features == 32
