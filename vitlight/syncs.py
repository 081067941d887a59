"""Counting the host-device synchronisations that code would force on a GPU, on any device.

A GPU runs ahead of the Python that feeds it; anything that asks the device for a value
(`.item()`, `if tensor:`, `.tolist()`, boolean indexing, `torch.unique`, ...) or copies a
host tensor to the device makes the host wait. `HostSyncCounter` records such calls made while
it is active, and, with `only_from`, only those that the named package's files ask for: walking
out from the call, the first frame of that package comes before any frame of Lightning (so
vitlight's step code counts, with the timm and torchmetrics calls it makes, and Lightning's
progress bar and loops, which call into vitlight's hooks, do not). It works on CPU too:
there nothing waits, but the same calls are made, so a test can count what a GPU would pay.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

# calls that read a device value on the host
_READS = {
    torch.Tensor.item: "item",
    torch.Tensor.__bool__: "__bool__",
    torch.Tensor.__int__: "__int__",
    torch.Tensor.__float__: "__float__",
    torch.Tensor.__index__: "__index__",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.numpy: "numpy",
    torch.Tensor.cpu: "cpu",
    torch.Tensor.nonzero: "nonzero",
    torch.nonzero: "nonzero",
    torch.Tensor.unique: "unique",
    torch.unique: "unique",
    torch.unique_consecutive: "unique",
    torch.equal: "equal",
    torch.Tensor.equal: "equal",
    torch.allclose: "allclose",
    torch.Tensor.allclose: "allclose",
    torch.masked_select: "masked_select",
    torch.Tensor.masked_select: "masked_select",
    torch.Tensor.__format__: "__format__",
}
_INDEXING = {torch.Tensor.__getitem__: "boolean index", torch.Tensor.__setitem__: "boolean index put"}
_MOVES = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.copy_}
_CREATES = {torch.tensor, torch.as_tensor}
_FRAMEWORKS = ("lightning", "pytorch_lightning")


def _package_folder(name: str) -> str | None:
    try:
        module = sys.modules.get(name) or __import__(name)
    except ImportError:
        return None
    return str(Path(module.__file__).parent) + "/"


def _has_bool_index(index: object) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(item, torch.Tensor) and item.dtype == torch.bool for item in items)


def _device_argument(args: tuple, kwargs: dict) -> bool:
    """Whether a `.to(...)` call names a device (or a tensor whose device it takes)."""
    if "device" in kwargs and kwargs["device"] is not None:
        return True
    return any(isinstance(a, (torch.device, torch.Tensor)) or (isinstance(a, str) and a != "meta") for a in args)


@dataclass
class HostSyncCounter(TorchFunctionMode):
    """Context manager: `with HostSyncCounter(only_from="vitlight") as counter: ...`; then
    `counter.total`, `counter.by_kind` and `counter.events` (kind, file:line of the caller)."""

    only_from: str | None = None
    events: list[tuple[str, str]] = field(default_factory=list)
    paused: bool = False

    def __post_init__(self) -> None:
        super().__init__()
        self._root = None
        self._others: tuple[str, ...] = ()
        if self.only_from is not None:
            self._root = _package_folder(self.only_from)
            self._others = tuple(folder for name in _FRAMEWORKS if (folder := _package_folder(name)) is not None)

    @property
    def total(self) -> int:
        return len(self.events)

    @property
    def by_kind(self) -> Counter:
        return Counter(kind for kind, _ in self.events)

    def reset(self) -> None:
        self.events.clear()

    def _kind(self, func, args: tuple, kwargs: dict) -> str | None:
        if func in _READS:
            return _READS[func]
        if func in _INDEXING and len(args) > 1 and _has_bool_index(args[1]):
            return _INDEXING[func]
        if func in _MOVES and args and isinstance(args[0], torch.Tensor):
            source = args[0]
            if func is torch.Tensor.copy_:
                other = args[1] if len(args) > 1 else None
                moves = isinstance(other, torch.Tensor) and other.device != source.device
                return (
                    "copy between devices"
                    if moves or (other is not None and other.device.type == "cpu" and source.device.type != "cpu")
                    else None
                )
            if func is torch.Tensor.cuda or (source.device.type == "cpu" and _device_argument(args[1:], kwargs)):
                return "host tensor to device"
            return None
        if func in _CREATES and kwargs.get("device") is not None:
            return "host data to device"
        return None

    def _caller(self) -> str | None:
        """The innermost frame in the watched package (None: a framework frame comes first)."""
        frame = sys._getframe(2)
        while frame is not None:
            filename = frame.f_code.co_filename
            if self._root is None or (filename.startswith(self._root) and not filename.endswith("syncs.py")):
                return f"{Path(filename).name}:{frame.f_lineno}"
            if filename.startswith(self._others):
                return None
            frame = frame.f_back
        return None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.paused:
            kind = self._kind(func, args, kwargs)
            if kind is not None:
                caller = self._caller()
                if caller is not None:
                    self.events.append((kind, caller))
        return func(*args, **kwargs)


def log_due(trainer) -> bool:
    """Whether the training step now ending writes its logs (every `log_every_n_steps`): the
    steps on which reading a value back from the device is allowed."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))
