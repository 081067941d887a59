"""Turns jsonargparse's multi-line parse errors into one line that names the key, the value and what is valid."""

from __future__ import annotations

import difflib
import re
import sys
from typing import Iterable

MAX_LENGTH = 600


def _type_name(text: str) -> str:
    match = re.fullmatch(r"<class '([\w.]+)'>", text.strip())
    name = match.group(1) if match else text.strip()
    return {"NoneType": "null"}.get(name.rsplit(".", 1)[-1], name.replace("typing.", ""))


def _subclass_names(key: str) -> list[str]:
    """The class names a subclass-mode key accepts (data modules for `data`, tasks for `model`)."""
    if key == "data":
        import vitlight.data as package
        from vitlight.data.base import ImageDataModule as base
    elif key == "model":
        import lightning as L
        import vitlight.tasks as package

        base = L.LightningModule
    else:
        return []
    return sorted(
        name for name, value in vars(package).items()
        if isinstance(value, type) and issubclass(value, base) and value is not base
    )


def _squash(message: str) -> str:
    lines = [line.strip(" -") for line in message.splitlines() if line.strip(" -")]
    return "; ".join(dict.fromkeys(lines))


def format_parse_error(message: str, option_strings: Iterable[str] = (), argv: list[str] | None = None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    key_match = re.search(r'Parser key "([^"]+)"', message)
    value_match = re.search(r"Given value: (.*)", message)
    key = key_match.group(1) if key_match else None
    value = value_match.group(1).strip() if value_match else None
    if key and "Expected a dot import path string" in message:
        valid = _subclass_names(key)
        return f"{key} {value!r} is not a known class; valid: {', '.join(valid) or 'a class_path'}"
    single = re.search(r"Expected a <class '([\w.]+)'>\. Got value: (.*)", message)
    if key and single:
        flags = [arg.split("=")[0].lstrip("-") for arg in argv if arg.startswith("--") and arg.split("=")[0].endswith("." + key)]
        return f"{flags[0] if flags else key}: {single.group(2).strip()!r} is not valid; expected {_type_name(single.group(1))}"
    subtypes = re.search(r"Subtypes: \[(.*)\]", message)
    if key and value is not None and subtypes:
        valid = [_type_name(t) for t in re.split(r",\s*(?=<|\w+\[|\w+$)", subtypes.group(1))]
        return f"{key}: {value!r} is not valid; expected {' or '.join(v for v in valid if v)}"
    unknown = re.match(r"Option '([\w.]+)' is not accepted", message)
    if unknown:
        name = unknown.group(1)
        flags = [arg.split("=")[0] for arg in argv if arg.startswith("--") and arg.split("=")[0].endswith("." + name)]
        where = flags[0].lstrip("-") if flags else name
        return f"unknown key {where!r}; `vitlight fit --help` lists the valid keys (and --model.help CLASS a model's own)"
    unrecognized = re.match(r"unrecognized arguments: (\S+)", message)
    if unrecognized:
        bad = unrecognized.group(1).split("=")[0]
        close = difflib.get_close_matches(bad, list(option_strings), n=3, cutoff=0.75)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; `vitlight fit --help` lists the valid keys"
        return f"unknown option {bad}{hint}"
    text = _squash(message)
    return text if len(text) <= MAX_LENGTH else text[: MAX_LENGTH - 3] + "..."
