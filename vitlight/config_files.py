"""Reading config files: a missing or malformed `--config` named before the parser sees it, and YAML
mappings that give a key twice refused (PyYAML keeps the last silently: a second `trainer:` section
would drop the first one's logger, callbacks and clipping). The check is installed as jsonargparse's
YAML loader, so it also covers the files a config includes (`trainer: _trainer.yaml`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from vitlight.errors import ConfigError


class DuplicateKeyError(ConfigError):
    """A YAML mapping that gives the same key twice."""


def _loader_class(base: type) -> type:
    class NoDuplicateKeys(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            first_lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in first_lines:
                    raise DuplicateKeyError(
                        f"key {key!r} appears twice in one YAML mapping (lines {first_lines[key]} and {line}); "
                        "YAML keeps only the last, so merge the two into one"
                    )
                first_lines[key] = line
            return super().construct_mapping(node, deep=deep)

    return NoDuplicateKeys


def install_yaml_loader() -> None:
    """jsonargparse's YAML loader (its resolvers kept) that also refuses duplicated keys."""
    from jsonargparse import set_loader
    from jsonargparse._loaders_dumpers import get_yaml_default_loader, yaml_load

    loader = _loader_class(get_yaml_default_loader())

    def load(text: str) -> Any:
        value = yaml.load(text, Loader=loader)
        return (
            yaml_load(text) if isinstance(value, dict) and value and all(v is None for v in value.values()) else value
        )

    set_loader("yaml", load)


def check_config_files(argv: list[str]) -> None:
    """Names a missing or malformed --config file (and a key it gives twice) before the parser reports it
    without the file name; the same for the files it includes (`trainer: _trainer.yaml`)."""
    for flag, value in zip(argv, argv[1:]):
        if flag in ("--config", "-c") and not value.lstrip().startswith("{"):
            path = Path(value).expanduser()
            if path.is_dir():
                raise ConfigError(f"config file {value!r} is a folder; give a .yaml file")
            if not path.is_file():
                raise ConfigError(f"config file {value!r} does not exist (relative paths start from {os.getcwd()})")
            _check_file(path, f"config file {value!r}")


def _check_file(path: Path, label: str, depth: int = 0) -> None:
    try:
        content = yaml.load(path.read_text(), Loader=_loader_class(yaml.SafeLoader))
    except DuplicateKeyError as error:
        raise ConfigError(f"{label}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{label} is not valid YAML: {problem}{where}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{label} cannot be read: {getattr(error, 'strerror', None) or error}") from None
    for key, included in _includes(content) if depth < 8 else []:
        target = (path.parent / included).resolve()
        if not target.is_file():
            raise ConfigError(
                f"{label} includes {included!r} at {key}, but {str(target)!r} does not exist (includes "
                f"are read relative to the including file's folder)"
            )
        _check_file(
            target, f"config file {included!r} (included by {label.removeprefix('config file ')} at {key})", depth + 1
        )


def _includes(tree: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(key, file) for each value that names another YAML file: jsonargparse reads it in place of the value."""
    if isinstance(tree, str) and tree.endswith((".yaml", ".yml")) and "\n" not in tree:
        return [(prefix or "the top level", tree)]
    if isinstance(tree, dict):
        return [item for key, value in tree.items() for item in _includes(value, f"{prefix}.{key}".lstrip("."))]
    return []
