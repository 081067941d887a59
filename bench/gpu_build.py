"""Experiment YAML -> the LightningModule and DataModule that `vitlight fit --config X.yaml` builds.

Without jsonargparse (the GPU machine lacks it), so without LightningCLI: a small reader that
does the part of the CLI that decides what is trained.

- Includes: a string value naming a YAML file (`trainer: _trainer.yaml`, `logger: _wandb.yaml`)
  is replaced by that file's content, resolved relative to the file that names it.
- Several files merge in order, as repeated `--config` do: mappings key by key, lists and
  scalars replaced; a `class_path` that changes drops the old `init_args`.
- Overrides as `--a.b.c value` would give them: `{"data.data_dir": DIR}` (a key under a
  class_path node goes into its init_args, as the CLI allows).
- `class_path`/`init_args` are instantiated with importlib; an argument typed as a callable
  (OptimizerCallable, LRSchedulerCallable) becomes a partial, as jsonargparse makes it.
- The data module is built first and its `num_classes`, `image_size` and `channels` are passed
  to the model (VitlightCLI's `link_arguments(..., apply_on="instantiate")`); the seed is set
  first (`seed_everything`, default 0).

tests/test_bench_gpu_build.py checks that this builds the same hyperparameters as
`VitlightCLI(run=False)` does.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LINKED = ("num_classes", "image_size", "channels")  # data.X -> model.init_args.X, as VitlightCLI links them
YAML_SUFFIXES = (".yaml", ".yml")


class BuildError(ValueError):
    """A config this reader cannot build; the message names the file or key."""


def load_yaml(path: Path) -> Any:
    """One YAML file with its includes resolved (relative to the file that names them)."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"config file {str(path)!r} does not exist")
    return _resolve_includes(yaml.safe_load(path.read_text()), path.parent)


def _resolve_includes(node: Any, folder: Path) -> Any:
    if isinstance(node, str) and node.endswith(YAML_SUFFIXES) and (folder / node).is_file():
        return load_yaml(folder / node)
    if isinstance(node, dict):
        return {key: _resolve_includes(value, folder) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_includes(value, folder) for value in node]
    return node


def merge(base: Any, new: Any) -> Any:
    """`new` over `base`, as a later --config overrides an earlier one."""
    if not (isinstance(base, dict) and isinstance(new, dict)):
        return copy.deepcopy(new)
    if "class_path" in new and "class_path" in base and new["class_path"] != base["class_path"]:
        return copy.deepcopy(new)
    out = copy.deepcopy(base)
    for key, value in new.items():
        out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


def set_dotted(config: dict, dotted: str, value: Any) -> None:
    """`config[a][b][c] = value` for "a.b.c"; under a class_path node, bare keys go into init_args."""
    node, keys = config, dotted.split(".")
    for index, key in enumerate(keys[:-1]):
        if isinstance(node, dict) and "class_path" in node and key not in ("class_path", "init_args"):
            node = node.setdefault("init_args", {})
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise BuildError(f"override {dotted}: {'.'.join(keys[: index + 1])} is not a section")
    if "class_path" in node and keys[-1] not in ("class_path", "init_args"):
        node = node.setdefault("init_args", {})
    node[keys[-1]] = value


def read_config(paths: list[Path], overrides: dict[str, Any] | None = None) -> dict:
    """The merged config of `--config paths[0] --config paths[1] ...` plus dotted overrides."""
    config: dict = {}
    for path in paths:
        config = merge(config, load_yaml(path) or {})
    for dotted, value in (overrides or {}).items():
        set_dotted(config, dotted, value)
    return config


def import_path(class_path: str) -> Any:
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except ModuleNotFoundError as error:  # e.g. a package the GPU machine lacks
        raise BuildError(f"class {class_path!r} cannot be imported: no module named {error.name!r}") from None
    except (ImportError, AttributeError, ValueError) as error:
        raise BuildError(f"class {class_path!r} cannot be imported: {error}") from None


def _takes_callable(cls: type, name: str) -> bool:
    """Whether `cls.__init__`'s argument `name` is typed as a callable (a factory, not an object)."""
    parameter = inspect.signature(cls).parameters.get(name)
    annotation = "" if parameter is None else parameter.annotation
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return "Callable" in text


def instantiate(node: Any, as_callable: bool = False) -> Any:
    """Objects for every class_path/init_args in `node`; with `as_callable`, a partial instead."""
    if isinstance(node, list):
        return [instantiate(value) for value in node]
    if not isinstance(node, dict):
        return node
    if "class_path" not in node:
        return {key: instantiate(value) for key, value in node.items()}
    cls = import_path(node["class_path"])
    arguments = {
        key: instantiate(value, as_callable=_takes_callable(cls, key))
        for key, value in (node.get("init_args") or {}).items()
    }
    if as_callable:
        return functools.partial(cls, **arguments)
    try:
        return cls(**arguments)
    except TypeError as error:
        raise BuildError(f"{node['class_path']}: {error}") from None


@dataclass
class Built:
    """What `vitlight fit` would train: the module, its data, the trainer section and the merged config."""

    module: Any
    datamodule: Any
    trainer: dict
    config: dict


def data_only(config: dict, overrides: dict[str, Any] | None = None) -> Any:
    """The data module of a merged config (with init_args overrides, e.g. data_dir)."""
    section = merge(config["data"], {"init_args": overrides or {}})
    return instantiate(section)


def build(paths: list[Path], overrides: dict[str, Any] | None = None) -> Built:
    """The module and data module of `vitlight fit --config paths... --overrides`."""
    import lightning as L

    config = read_config(paths, overrides)
    for section in ("model", "data"):
        if not isinstance(config.get(section), dict) or "class_path" not in config[section]:
            raise BuildError(f"{', '.join(map(str, paths))}: no {section}.class_path")
    seed = config.get("seed_everything", 0)
    if seed is not None and seed is not False:
        L.seed_everything(seed, verbose=False)
    datamodule = instantiate(config["data"])
    model_section = copy.deepcopy(config["model"])
    accepted = inspect.signature(import_path(model_section["class_path"])).parameters
    links = {name: getattr(datamodule, name) for name in LINKED if name in accepted and hasattr(datamodule, name)}
    model_section.setdefault("init_args", {}).update(links)
    return Built(instantiate(model_section), datamodule, config.get("trainer") or {}, config)
