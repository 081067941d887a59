"""What `vitlight figures` wrote in one run: its PNG and JSON files, the W&B tables, and the figures
skipped with the reason (all listed in figures.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class Gallery:
    """What one command wrote: files, the W&B tables, and the figures skipped with the reason."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.figures: dict[str, dict[str, str]] = {}
        self.skipped: dict[str, str] = {}
        self.tables: dict[str, tuple[list[str], list[list[Any]]]] = {}

    def json(self, name: str, data: dict[str, Any]) -> Path:
        from vitlight.files import write_json_atomic

        path = self.out / f"{name}.json"
        write_json_atomic(path, data)
        return path

    def add(self, name: str, png: Path, data: dict[str, Any]) -> None:
        self.figures[name] = {"png": png.name, "json": self.json(name, data).name}

    def skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        print(f"skipped {name}: {reason}")


def rounded(tensor: torch.Tensor, digits: int = 5) -> list:
    """A tensor as nested lists of floats rounded for the JSON files."""
    return torch.round(tensor.detach().float().cpu(), decimals=digits).tolist()
