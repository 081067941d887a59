"""OpenAI's released ImageGPT models, read from the Hugging Face transformers format.

A folder written by `ImageGPTForCausalImageModeling.save_pretrained` plus
`ImageGPTImageProcessor.save_pretrained` holds ``config.json``, the weights
(``model.safetensors``, ``pytorch_model.bin`` or sharded with an index) and
``preprocessor_config.json`` with the 512 colour clusters in [-1, 1] pixel units.
`from_transformers` turns it into vitlight's `ImageGPT` with OpenAI's architecture options
(RMS-style norms, quick-GELU, the SOS vector as the last row of the token embedding) and a
`Palette` of the same clusters in [0, 255]. transformers itself is not needed; the hub
names are fetched with `huggingface_hub` on a connected machine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vitlight.errors import CheckpointError
from vitlight.models.igpt_config import IGPTConfig
from vitlight.models.igpt_model import ImageGPT
from vitlight.models.palette import Palette

log = logging.getLogger(__name__)

# OpenAI's released models and the vitlight presets of the same shape (n_layer, n_embd, n_head)
HUB_PRESETS = {"openai/imagegpt-small": "igpt-s", "openai/imagegpt-medium": "igpt-m", "openai/imagegpt-large": "igpt-l"}
HUB_NAMES = tuple(HUB_PRESETS)
CONFIG_FILE = "config.json"
PROCESSOR_FILE = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
PALETTE_KIND = "openai"


def is_transformers_folder(path: str | Path) -> bool:
    """Whether ``path`` is a local folder in the transformers ImageGPT layout."""
    folder = Path(path).expanduser()
    return folder.is_dir() and (folder / CONFIG_FILE).is_file()


def looks_like_hub_name(text: str) -> bool:
    """``owner/name`` with no path of that name here (e.g. openai/imagegpt-small)."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and not Path(text).exists()


def _fetch(hf_hub_download: Any, name: str) -> Path:
    """Config, processor and the first weights format the repository has, into the cache; their folder."""
    for file in (CONFIG_FILE, PROCESSOR_FILE):
        folder = Path(hf_hub_download(name, file)).parent
    for index, file in enumerate(WEIGHT_FILES):
        try:
            hf_hub_download(name, file)
            break
        except Exception as error:  # a repository with only the other weights format
            if index == len(WEIGHT_FILES) - 1 or "EntryNotFound" not in type(error).__name__:
                raise
    return folder


def _download(name: str) -> Path:
    """The hub repository's config, processor and weights in the local cache."""
    usage = (
        f"on a connected machine run `huggingface-cli download {name} config.json preprocessor_config.json "
        f"model.safetensors` (or pytorch_model.bin) and pass the local folder instead"
    )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointError(f"loading {name!r} by name needs huggingface_hub; {usage}") from None
    from vitlight.hub import offline_when_unreachable

    try:
        with offline_when_unreachable():
            folder = _fetch(hf_hub_download, name)
    except Exception as error:
        first = (str(error).splitlines() or [""])[0][:120]
        raise CheckpointError(
            f"cannot fetch {name!r} from the Hugging Face hub ({type(error).__name__}: {first}); {usage}"
        ) from None
    return folder


def resolve_folder(path_or_name: str | Path) -> Path:
    """A local transformers folder for a path or a hub name (downloaded once, then cached)."""
    text = str(path_or_name)
    folder = Path(text).expanduser()
    if folder.is_dir():
        if not (folder / CONFIG_FILE).is_file():
            raise CheckpointError(
                f"{text!r} holds no {CONFIG_FILE}; pass a folder written by transformers' save_pretrained"
            )
        return folder
    if folder.exists():
        raise CheckpointError(
            f"{text!r} is a file; OpenAI's ImageGPT is read from a transformers folder (config.json, weights, "
            f"{PROCESSOR_FILE})"
        )
    if looks_like_hub_name(text):
        return _download(text)
    raise CheckpointError(
        f"{text!r} does not exist; pass a transformers ImageGPT folder or a hub name such as {HUB_NAMES[0]}"
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {str(path)!r}: {error}") from None


def _read_tensors(file: Path) -> dict[str, Tensor]:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read weights {str(file)!r} ({type(error).__name__})") from None


def read_weights(folder: Path) -> dict[str, Tensor]:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return _read_tensors(folder / name)
    for name in INDEX_FILES:
        if (folder / name).is_file():
            shards = sorted(set(_read_json(folder / name).get("weight_map", {}).values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(_read_tensors(folder / shard))
            return state
    raise CheckpointError(f"{str(folder)!r} holds no weights ({', '.join(WEIGHT_FILES + INDEX_FILES)})")


def config_from_json(config: dict) -> IGPTConfig:
    """vitlight's config for a transformers ImageGPTConfig (as read from config.json)."""
    if config.get("model_type") != "imagegpt":
        raise CheckpointError(f"config.json is for model_type {config.get('model_type')!r}, not 'imagegpt'")
    unsupported = {
        "scale_attn_by_inverse_layer_idx": config.get("scale_attn_by_inverse_layer_idx", False),
        "scale_attn_weights=false": not config.get("scale_attn_weights", True),
        "add_cross_attention": config.get("add_cross_attention", False),
    }
    if any(unsupported.values()):
        raise CheckpointError(f"ImageGPT options not supported: {', '.join(k for k, v in unsupported.items() if v)}")
    missing = [key for key in ("vocab_size", "n_positions", "n_layer", "n_embd", "n_head") if key not in config]
    if missing:
        raise CheckpointError(
            f"ImageGPT config.json lacks {', '.join(missing)}; is it a complete transformers ImageGPT folder?"
        )
    activation = config.get("activation_function", "quick_gelu")
    if activation not in ("quick_gelu", "gelu"):
        raise CheckpointError(f"ImageGPT activation_function {activation!r} is not supported; valid: quick_gelu, gelu")
    n_embd = int(config["n_embd"])
    n_inner = int(config.get("n_inner") or 4 * n_embd)
    if n_inner % n_embd:
        raise CheckpointError(f"ImageGPT n_inner={n_inner} is not a multiple of n_embd={n_embd}")
    return IGPTConfig(
        vocab_size=int(config["vocab_size"]) - 1,  # the last row is the SOS token
        n_positions=int(config["n_positions"]),
        n_layer=int(config["n_layer"]),
        n_embd=n_embd,
        n_head=int(config["n_head"]),
        mlp_ratio=n_inner // n_embd,
        causal=True,
        norm="rmsnorm",
        norm_eps=float(config.get("layer_norm_epsilon", 1e-5)),
        activation=activation,
        sos_in_token_embedding=True,
    )


def convert_state_dict(theirs: dict[str, Tensor], n_layer: int) -> dict[str, Tensor]:
    """transformers' names and Conv1D (in, out) weights -> vitlight's names and (out, in) linears."""
    theirs = {k.removeprefix("transformer."): v for k, v in theirs.items()}
    if "lm_head.weight" not in theirs:
        raise CheckpointError(
            "the weights hold no lm_head; save an ImageGPTForCausalImageModeling, not an ImageGPTModel"
        )
    ours = {
        "tok_emb.weight": theirs["wte.weight"],
        "pos_emb": theirs["wpe.weight"],
        "ln_f.weight": theirs["ln_f.weight"],
        "head.weight": theirs["lm_head.weight"],
    }
    linears = {"attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj", "mlp.c_fc": "mlp.0", "mlp.c_proj": "mlp.2"}
    for i in range(n_layer):
        for norm in ("ln_1", "ln_2"):
            ours[f"blocks.{i}.{norm}.weight"] = theirs[f"h.{i}.{norm}.weight"]
        for their_name, our_name in linears.items():
            ours[f"blocks.{i}.{our_name}.weight"] = theirs[f"h.{i}.{their_name}.weight"].t().contiguous()
            ours[f"blocks.{i}.{our_name}.bias"] = theirs[f"h.{i}.{their_name}.bias"]
    return ours


def palette_from_clusters(clusters: list | Tensor) -> Palette:
    """The processor's clusters, in normalized units (pixel / 127.5 - 1), as a Palette in [0, 255]."""
    centers = (torch.as_tensor(clusters, dtype=torch.float64) + 1.0) * 127.5
    if centers.dim() != 2 or centers.shape[1] != 3:
        raise CheckpointError(f"{PROCESSOR_FILE} clusters must have shape (K, 3), got {tuple(centers.shape)}")
    return Palette(centers.clamp(0, 255).float(), kind=PALETTE_KIND)


def from_transformers(path_or_hub_name: str | Path) -> tuple[ImageGPT, Palette]:
    """(ImageGPT in eval mode, its Palette) from a transformers folder or a hub name such as
    ``openai/imagegpt-small``. Offline, a hub name fails with a line saying how to use a folder."""
    folder = resolve_folder(path_or_hub_name)
    cfg = config_from_json(_read_json(folder / CONFIG_FILE))
    if not (folder / PROCESSOR_FILE).is_file():
        raise CheckpointError(
            f"{str(folder)!r} holds no {PROCESSOR_FILE} with the colour clusters; save the ImageGPTImageProcessor "
            "there too"
        )
    clusters = _read_json(folder / PROCESSOR_FILE).get("clusters")
    if clusters is None:
        raise CheckpointError(f"{str(folder / PROCESSOR_FILE)!r} holds no clusters")
    palette = palette_from_clusters(clusters)
    if palette.size != cfg.vocab_size:
        raise CheckpointError(
            f"the processor has {palette.size} clusters but the model predicts {cfg.vocab_size} colours"
        )
    model = ImageGPT(cfg)
    try:
        model.load_state_dict(convert_state_dict(read_weights(folder), cfg.n_layer))
    except (KeyError, RuntimeError) as error:
        detail = (str(error).splitlines() or [""])[0][:200]
        raise CheckpointError(f"weights in {str(folder)!r} do not fit its config.json: {detail}") from None
    log.info(
        "loaded OpenAI ImageGPT (%d layers, width %d) and its %d-colour palette from %s",
        cfg.n_layer,
        cfg.n_embd,
        palette.size,
        folder,
    )
    return model.eval(), palette
