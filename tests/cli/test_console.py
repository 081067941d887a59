"""The quickstart's console: vitlight's own lines, the progress bar and the tables; nothing a user cannot act on."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import EXPERIMENTS, SMOKE, run_vitlight

# Every line a smoke run of the quickstart may print on stderr.
ALLOWED_STDERR = (
    re.compile(r"^W&B: (offline|online|disabled) \(.+\); run files in "),  # the W&B mode and where its files go
    re.compile(r"^EmbeddedDigits: train \d+ of \d+ "),  # what data the run uses
    re.compile(r"^\w+: decoding the \w+ split "),  # the one-time image cache
    re.compile(r"^vitlight: testing checkpoint \(best by val/acc\): .+best-000\.ckpt$"),
)


def test_smoke_quickstart_prints_only_lines_a_user_can_act_on(tmp_path: Path):
    result = run_vitlight(
        "fit",
        "--config",
        str(EXPERIMENTS / "quickstart.yaml"),
        "--config",
        str(SMOKE),
        "--runs_dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    unexpected = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not any(pattern.search(line) for pattern in ALLOWED_STDERR)
    ]
    assert unexpected == [], "\n".join(unexpected)
    assert sum(line.startswith("W&B: ") for line in result.stderr.splitlines()) == 1
    # the model summary has no FLOPs column of zeros; the test results table is there
    assert "FLOPs" not in result.stdout
    assert re.search(r"Parameters: [\d.]+ [KM]", result.stdout)
    assert "test/acc" in result.stdout
