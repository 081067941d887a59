"""vitlight's subcommands beyond Lightning's fit/validate/test/predict.

Each is `module:function`, imported only when used; the function takes the arguments
after the subcommand and returns an exit code.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

COMMAND_TARGETS: dict[str, str] = {
    "sample": "vitlight.tools.sample:main",
    "probe": "vitlight.tools.probe:main",
    "attention": "vitlight.tools.attention:main",
    "sweep": "vitlight.sweeps.command:main",
    "report": "vitlight.analysis.report_command:main",
    "pipeline": "vitlight.tools.pipeline:main",
    "figures": "vitlight.tools.figures:main",  # every lecture figure of a checkpoint or sweep, PNG + JSON
    "dashboard": "vitlight.sweeps.dashboard:main",  # a W&B workspace view for one study (wandb-workspaces)
    "shrink_images": "vitlight.tools.shrink_images:main",  # a pre-resized copy of an image folder, for the loader
}


def _available(target: str) -> bool:
    module = target.split(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _loader(target: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        module, _, function = target.partition(":")
        return getattr(importlib.import_module(module), function)(argv)

    return run


EXTRA_COMMANDS: dict[str, Callable[[list[str]], int]] = {
    name: _loader(target) for name, target in COMMAND_TARGETS.items() if _available(target)
}
