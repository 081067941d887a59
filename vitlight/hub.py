"""Whether the Hugging Face hub can be reached, decided when a call is made.

The hub clients read HF_HUB_OFFLINE only when they are imported, and on a machine without a
connection they retry for tens of seconds before failing. `offline_when_unreachable` reads the
variable at call time, or probes the hub's host for 3 seconds, and puts the clients in offline mode
for the call: cached files still load, and a missing one fails at once. Used for hub datasets, timm's
pretrained weights and OpenAI's ImageGPT by name.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def offline_reason() -> str | None:
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(variable, "").upper() in TRUE_VALUES:
            return f"offline: {variable}={os.environ[variable]}"
    return None


def unreachable_reason() -> str | None:
    """Why the hub's host cannot be reached, or None when it can (or a proxy is in the way)."""
    if any(os.environ.get(variable) for variable in PROXY_VARIABLES):
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        return f"no connection to {host}: {error.strerror or error}"
    return None


@contextmanager
def offline_flags(offline: bool) -> Iterator[None]:
    """Puts `datasets` and `huggingface_hub` in offline mode for the call (they read the variables at import)."""
    import huggingface_hub.constants as hub_constants

    modules = [hub_constants]
    if "datasets" in sys.modules:  # `datasets` keeps its own copy; not imported here for the timm and ImageGPT paths
        import datasets.config

        modules.append(datasets.config)
    saved = [module.HF_HUB_OFFLINE for module in modules]
    if offline:
        for module in modules:
            module.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for module, value in zip(modules, saved):
            module.HF_HUB_OFFLINE = value


@contextmanager
def offline_when_unreachable() -> Iterator[str | None]:
    """Puts the hub clients in offline mode for the call when HF_HUB_OFFLINE is set or the hub's host
    cannot be reached (cached files still load, and a missing one fails at once instead of after the
    clients' retries); yields why it is offline, or None."""
    reason = offline_reason() or unreachable_reason()
    with offline_flags(reason is not None):
        yield reason
