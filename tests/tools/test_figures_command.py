"""`vitlight figures` on a real tiny checkpoint of each kind, made by `vitlight fit` (and `vitlight probe`) here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder
from tests.helpers.wandb_records import read_records
from vitlight.cli import main

TINY_VIT = {"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}
VIT_FILES = {
    "patch_embedding_components",
    "position_embedding_similarity",
    "mean_attention_distance",
    "attention_rollout",
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny ViT and a tiny iGPT checkpoint, a probe result of the iGPT, and the runs folder holding them."""
    root = tmp_path_factory.mktemp("figures")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:  # the autouse isolation is per test; this runs before it
        patch.setenv("HOME", str(root / "home"))
        patch.setenv("WANDB_MODE", "disabled")
        patch.setenv("VITLIGHT_CACHE", str(root / "cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.chdir(root)
        torch.set_num_threads(1)
        vit_images = write_image_folder(root / "images16", per_class=12, size=16)
        igpt_images = write_image_folder(root / "images8", per_class=16, size=8)
        runs = root / "runs"
        common = [
            "--config",
            str(SMOKE),
            "--runs_dir",
            str(runs),
            "--trainer.enable_progress_bar",
            "false",
            "--data",
            "ImageFolder",
            "--data.num_workers",
            "0",
        ]
        assert (
            main(
                [
                    "fit",
                    "--config",
                    str(EXPERIMENTS / "quickstart.yaml"),
                    *common,
                    "--data.data_dir",
                    str(vit_images),
                    "--data.image_size",
                    "16",
                    "--model.model_kwargs",
                    json.dumps(TINY_VIT),
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "fit",
                    "--config",
                    str(EXPERIMENTS / "igpt_tiny_quickstart.yaml"),
                    *common,
                    "--data.data_dir",
                    str(igpt_images),
                    "--data.image_size",
                    "8",
                    "--data.val_fraction",
                    "0.25",
                    "--model.init_args.palette_pixels",
                    "5000",
                ]
            )
            == 0
        )
        igpt = next(runs.glob("igpt_tiny_quickstart/*/checkpoints/last.ckpt"))
        assert (
            main(
                [
                    "probe",
                    "--ckpt",
                    str(igpt),
                    "--runs_dir",
                    str(runs),
                    "--l2",
                    "1e-2",
                    "--max_iter",
                    "20",
                    "--baseline",
                    "none",
                ]
            )
            == 0
        )
        torch.set_num_threads(threads)
    return {
        "vit": next(runs.glob("quickstart/*/checkpoints/last.ckpt")),
        "igpt": igpt,
        "runs": runs,
        "vit_images": vit_images,
        "igpt_images": igpt_images,
    }


def _written(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_file()}


def _expect(out: Path, names: set[str]) -> dict:
    files = {f"{name}.{suffix}" for name in names for suffix in ("png", "json")} | {"figures.json"}
    assert _written(out) == files
    for name in names:
        with Image.open(out / f"{name}.png") as image:
            assert image.size[0] > 50 and np.asarray(image.convert("L")).std() > 0
    index = json.loads((out / "figures.json").read_text())
    assert set(index["figures"]) == names
    return index


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("vitlight: error: ")
    return err[0]


def test_a_vit_checkpoint_gets_fig7_and_rollout_and_a_wandb_run(made, tmp_path: Path):
    out = tmp_path / "out"
    assert (
        main(["figures", "--ckpt", str(made["vit"]), "--out", str(out), "--n_images", "6", "--rollout_images", "3"])
        == 0
    )
    index = _expect(out, VIT_FILES)
    assert index["kind"] == "vit" and index["skipped"] == {}
    distance = json.loads((out / "mean_attention_distance.json").read_text())
    assert np.array(distance["distance"]).shape == (2, 2) and distance["images"] == 6  # (depth, heads)
    similarity = np.array(json.loads((out / "position_embedding_similarity.json").read_text())["similarity"])
    assert similarity.shape == (16, 16) and np.allclose(np.diag(similarity), 1, atol=1e-3)
    components = json.loads((out / "patch_embedding_components.json").read_text())
    assert np.array(components["components"]).shape == (28, 3, 4, 4)
    rollout = json.loads((out / "attention_rollout.json").read_text())["images"]
    assert len(rollout) == 3 and all(row["label"] in ("cat", "dog", "frog") for row in rollout)
    with Image.open(out / "attention_rollout.png") as image:
        assert image.size == (3 * 98 + 2, 2 * 98 + 2)  # 16 px enlarged to 96, images over overlays, 2 px gaps
    # W&B offline (no credentials): the four figures as images, the distances as a table
    (run,) = (out / "wandb").glob("offline-run-*")
    assert len(list((run / "files" / "media" / "images").rglob("*.png"))) == 4
    keys = {
        item.key or "/".join(item.nested_key[:1])
        for record in read_records(next(run.glob("run-*.wandb")))
        if record.WhichOneof("record_type") == "history"
        for item in record.history.item
    }
    assert {"figures/mean_attention_distance", "figures/attention_distance_table"} <= keys


def test_an_igpt_checkpoint_gets_completions_and_its_probe_curve(made, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "out"
    assert (
        main(["figures", "--ckpt", str(made["igpt"]), "--out", str(out), "--completions", "3", "--samples", "2"]) == 0
    )
    _expect(out, {"completions", "probe_accuracy"})
    probe = json.loads((out / "probe_accuracy.json").read_text())
    assert [row["layer"] for row in probe["layers"]] == list(range(len(probe["layers"]))) and probe["layers"]
    with Image.open(out / "completions.png") as grid:
        assert grid.size[1] == 3 * (64 + 2) + 2  # one row per image, 8 px enlarged 8x


def test_a_sweep_folder_gets_the_scaling_plots(made, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    out = tmp_path / "out"
    assert main(["figures", "--ckpt", str(made["runs"]), "--out", str(out)]) == 0
    index = _expect(out, {"accuracy_vs_train_size", "accuracy_vs_compute"})
    assert index["kind"] == "sweep"


def _tiny_timm(monkeypatch) -> list:
    """timm.create_model(name, pretrained=True) without the network: a random tiny ViT of that family."""
    asked = []
    create = timm.create_model

    def offline(name: str, pretrained: bool = False, **kwargs):
        asked.append((name, pretrained))
        return create(name, pretrained=False, img_size=16, num_classes=5, **TINY_VIT)

    monkeypatch.setattr(timm, "create_model", offline)
    return asked


def test_a_timm_model_name_gets_fig7_and_with_data_the_image_figures(made, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    asked = _tiny_timm(monkeypatch)
    alone = tmp_path / "alone"
    assert main(["figures", "--ckpt", "vit_tiny_patch16_224.augreg_in21k", "--out", str(alone)]) == 0
    assert asked == [("vit_tiny_patch16_224.augreg_in21k", True)]
    index = _expect(alone, {"patch_embedding_components", "position_embedding_similarity"})
    assert set(index["skipped"]) == {"mean_attention_distance", "attention_rollout"}
    with_data = tmp_path / "with_data"
    assert (
        main(
            [
                "figures",
                "--ckpt",
                "vit_tiny_patch16_224",
                "--out",
                str(with_data),
                "--n_images",
                "4",
                "--rollout_images",
                "2",
                "--data",
                "ImageFolder",
                "--data.data_dir",
                str(made["vit_images"]),
                "--data.num_workers",
                "0",
            ]
        )
        == 0
    )
    _expect(with_data, VIT_FILES)


def test_a_timm_name_offline_fails_in_one_line_and_writes_nothing(tmp_path: Path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_OFFLINE", True
    )  # read at import: the env variable is too late
    out = tmp_path / "out"
    assert main(["figures", "--ckpt", "vit_tiny_patch16_224.augreg_in21k", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "'vit_tiny_patch16_224.augreg_in21k'" in line and "internet" in line
    assert not out.exists()


def test_sources_that_are_none_of_the_kinds_fail_in_one_line(made, tmp_path: Path, capsys):
    transformers = tmp_path / "imagegpt-small"
    transformers.mkdir()
    (transformers / "config.json").write_text(json.dumps({"model_type": "imagegpt"}))
    out = tmp_path / "out"
    cases = [
        (["--ckpt", str(transformers)], "config.json lacks vocab_size"),  # read by PixelPretrainer.from_transformers
        (["--ckpt", "no_such_model_or_file"], "neither a file, a folder, a timm model name"),
        (["--ckpt", str(made["vit_images"])], "without run summaries"),
        (["--ckpt", str(made["vit"]), "--n_images", "0"], "--n_images must be at least 1"),
        (["--ckpt", str(made["runs"]), "--data.image_size", "8"], "do not apply to a sweep folder"),
    ]
    for args, message in cases:
        assert main(["figures", *args, "--out", str(out)]) == 2
        assert message in _error_line(capsys)
    assert not out.exists()
