"""`vitlight --help`: what vitlight is, and every subcommand in one line each.

Lightning's four subcommands are described here; vitlight's own come from the registry in
vitlight.commands, each described by the first line of its module's docstring (read from
the source, not imported, so that `--help` stays fast), so a new subcommand shows up by
being registered there.
"""

from __future__ import annotations

import ast
import importlib.util
import re

DESCRIPTION = (
    "vitlight trains, compares and explains Vision Transformers, ImageGPT and their CNN baselines "
    "from YAML experiment files (PyTorch Lightning, timm, Hugging Face datasets, Weights & Biases)."
)
LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a model from experiment YAMLs (--config FILE), then test its best checkpoint",
    "validate": "run the validation set through a checkpoint (--ckpt_path)",
    "test": "run the test set through a checkpoint (--ckpt_path)",
    "predict": "predict with a checkpoint (--ckpt_path)",
}
# "`vitlight sweep FILE`: run a sweep" -> "run a sweep"
_NAME_PREFIX = re.compile(r"^`vitlight [^`]*`:\s*")


def module_summary(module: str) -> str:
    """The first line of a module's docstring, without its leading "`vitlight NAME ...`:"."""
    try:
        spec = importlib.util.find_spec(module)
        source = open(spec.origin, encoding="utf-8").read() if spec and spec.origin else ""
        docstring = ast.get_docstring(ast.parse(source)) or ""
    except (ImportError, OSError, SyntaxError, ValueError):
        return ""
    first = docstring.strip().splitlines()[0] if docstring.strip() else ""
    return _NAME_PREFIX.sub("", first).rstrip(".")


def subcommand_summaries() -> dict[str, str]:
    """Every subcommand with its one-line description, Lightning's first."""
    from vitlight.commands import COMMAND_TARGETS, EXTRA_COMMANDS

    summaries = dict(LIGHTNING_COMMANDS)
    for name in sorted(EXTRA_COMMANDS):
        summaries[name] = module_summary(COMMAND_TARGETS[name].split(":")[0]) or f"see `vitlight {name} --help`"
    return summaries


def top_level_help() -> str:
    summaries = subcommand_summaries()
    width = max(len(name) for name in summaries)
    lines = [
        "usage: vitlight COMMAND [options]",
        "",
        DESCRIPTION,
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, summary in summaries.items()),
        "",
        "`vitlight COMMAND --help` shows a command's options; e.g. `vitlight fit --config "
        "experiments/quickstart.yaml`.",
    ]
    return "\n".join(lines) + "\n"
