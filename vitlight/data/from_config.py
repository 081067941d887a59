"""The data module of a run config (as a checkpoint stores it), with command-line overrides on top."""

from __future__ import annotations

import json
from typing import Any

from jsonargparse import ArgumentParser

from vitlight.cli_errors import format_parse_error
from vitlight.data.base import ImageDataModule
from vitlight.errors import ConfigError


def build_datamodule(data_config: dict[str, Any] | None, overrides: list[str] | None = None):
    """Instantiates the data module of a run config, with `--data X --data.key value` overrides on top."""

    class _Parser(ArgumentParser):
        def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
            raise ConfigError(format_parse_error(str(message), argv=overrides))

    parser = _Parser(exit_on_error=False)
    parser.add_subclass_arguments(ImageDataModule, "data")
    args = (["--data", json.dumps(data_config)] if data_config else []) + list(overrides or [])
    config = parser.parse_args(args)
    return parser.instantiate_classes(config).data
