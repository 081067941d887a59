"""Online or offline, decided as wandb decides it: the same netrc file, WANDB_BASE_URL and settings file given to
vitlight's choice and to wandb's own lookup (`wandb.setup()`'s base URL, `wbauth.read_netrc_auth`) must agree,
so a self-hosted login (`machine localhost:8080`) goes online."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vitlight.logging_wandb import apply_wandb_mode, choose_wandb_mode, has_wandb_credentials

KEY = "local-" + "a" * 40  # a self-hosted server's key form


def wandb_finds_a_key() -> bool:
    """wandb's own answer: its settings' base URL, then its netrc lookup for that server."""
    import wandb
    from wandb.sdk.lib import wbauth

    try:
        base_url = wandb.setup().settings.base_url
        return wbauth.read_netrc_auth(host=base_url) is not None
    finally:
        wandb.teardown()


def write_netrc(home: Path, machine: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    path = Path(os.environ["NETRC"])
    path.write_text(f"machine {machine}\n  login user\n  password {KEY}\n")
    path.chmod(0o600)


CASES = {  # netrc machine, WANDB_BASE_URL, settings file base_url -> credentials found
    "self-hosted with its port": ("localhost:8080", "http://localhost:8080", None, True),
    "host without the port": ("localhost", "http://localhost:8080", None, False),
    "base_url from wandb's settings file": ("localhost:8080", None, "http://localhost:8080", True),
    "the cloud's entry, default server": ("api.wandb.ai", None, None, True),
    "the cloud's entry, self-hosted server": ("api.wandb.ai", "http://localhost:8080", None, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_credentials_are_found_where_wandb_finds_them(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    machine, base_url, settings_url, expected = CASES[case]
    write_netrc(tmp_path / "home", machine)
    if base_url:
        monkeypatch.setenv("WANDB_BASE_URL", base_url)
    if settings_url:
        settings = Path(os.environ["WANDB_CONFIG_DIR"]) / "settings"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(f"[default]\nbase_url = {settings_url}\n")
    assert has_wandb_credentials() == wandb_finds_a_key() == expected
    assert choose_wandb_mode()[0] == ("online" if expected else "offline")


def test_wandbs_offline_setting_and_no_silencing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_netrc(tmp_path / "home", "api.wandb.ai")
    settings = Path(os.environ["WANDB_CONFIG_DIR"]) / "settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("[default]\nmode = offline\n")  # what `wandb offline` writes
    assert choose_wandb_mode()[0] == "offline"
    settings.write_text("[default]\n")
    monkeypatch.delenv("WANDB_SILENT")
    assert apply_wandb_mode()[0] == "online"
    assert "WANDB_SILENT" not in os.environ and os.environ["WANDB_QUIET"] == "true"  # the run's URL line stays
