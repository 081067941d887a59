"""ImageClassifier's GPU-side settings, shown on a CPU: the EMA steps with the optimizer, the memory
format is final before DDP wraps the model, cuDNN benchmarking is on for CNNs on a GPU."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

from tests.tasks.test_classification import quiet_trainer, separable_loader, tiny_vit
from vitlight.tasks import ImageClassifier


def tiny_resnet(**kwargs) -> ImageClassifier:
    return ImageClassifier(
        model_name="resnet18", num_classes=4, image_size=16, channels=3, cifar_stem=True, lr_scheduler=None, **kwargs
    )


class CountingUpdates:
    """Counts the real ModelEmaV3.update calls (the update itself still runs)."""

    def __init__(self, ema) -> None:
        self.calls, self.real = 0, ema.update
        ema.update = self

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("accumulate", [1, 2, 4])
def test_ema_takes_one_step_per_optimizer_step_under_gradient_accumulation(accumulate: int):
    model = tiny_vit(ema_decay=0.9, lr_scheduler=None)
    counter = CountingUpdates(model.ema)
    trainer = quiet_trainer(max_epochs=1, accumulate_grad_batches=accumulate, limit_val_batches=0)
    trainer.fit(model, separable_loader(count=128))  # 8 batches of 16
    assert trainer.global_step == 8 // accumulate
    assert counter.calls == trainer.global_step  # was 8 (one per micro-batch) whatever the accumulation


class WrapSpy(DDPStrategy):
    """Torch's DDP through Lightning's own strategy, noting the memory format the model has when wrapped."""

    formats: list[bool] = []

    def _setup_model(self, model):
        weight = model.backbone.conv1.weight
        self.formats.append(weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous())
        return super()._setup_model(model)


def test_channels_last_is_applied_before_ddp_wraps_the_model_and_the_ema_copy_follows():
    model = tiny_resnet(channels_last=True, ema_decay=0.9)
    WrapSpy.formats = []
    trainer = quiet_trainer(
        max_steps=1, num_sanity_val_steps=0, devices=1, strategy=WrapSpy(process_group_backend="gloo")
    )
    trainer.fit(model, separable_loader(), separable_loader())
    assert WrapSpy.formats == [True]  # NCHW at wrapping time before: DDP's buckets then had the wrong strides
    assert model.ema.module.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    (results,) = trainer.validate(model, separable_loader(), verbose=False)
    assert "val/acc_ema" in results  # the average evaluates in the format it is kept in


def _on(model: ImageClassifier, device_type: str) -> ImageClassifier:
    # the decision reads only where the trainer will run the model
    model._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device_type)))
    return model


def test_cudnn_benchmark_defaults_on_for_cnns_on_a_gpu_only(monkeypatch):
    assert _on(tiny_resnet(), "cuda")._uses_cudnn_benchmark
    assert not _on(tiny_resnet(), "cpu")._uses_cudnn_benchmark
    assert not _on(tiny_vit(), "cuda")._uses_cudnn_benchmark  # attention models gain nothing from it
    assert not _on(tiny_resnet(cudnn_benchmark=False), "cuda")._uses_cudnn_benchmark
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    assert not _on(tiny_resnet(), "cuda")._uses_cudnn_benchmark  # a deterministic trainer keeps its algorithms


def test_cudnn_benchmark_setting_reaches_torch(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(tiny_resnet(cudnn_benchmark=True), separable_loader())
    assert torch.backends.cudnn.benchmark is True
