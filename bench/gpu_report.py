"""The GPU benchmark's record: environment, goals, and the Markdown table (JSON holds everything)."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import shlex
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
NOT_MEASURED = "not measured on a GPU yet"
# MFU against the measured matmul ceiling, with torch.compile; real-data rate / synthetic rate
GOALS = {"vit_b16": 0.5, "igpt_s": 0.4, "real_data": 0.9}


def environment(device: torch.device, argv: list[str], settings: dict) -> dict:
    def version(name: str) -> str | None:
        try:
            return importlib.import_module(name).__version__
        except Exception:
            return None

    try:
        run = lambda *cmd: subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()  # noqa: E731
        commit = run("git", "rev-parse", "--short", "HEAD")
        commit = f"{commit}{' (uncommitted changes)' if run('git', 'status', '--porcelain') else ''}" or None
    except Exception:
        commit = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "bench/gpu.py", *argv]),
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "timm": version("timm"),
        "lightning": version("lightning"),
        "vitlight_commit": commit,
        **settings,
    }


def goals(report: dict) -> list[dict]:
    on_gpu = report["environment"]["device"] == "cuda"
    out = []
    for name, target in GOALS.items():
        if name == "real_data":
            what, key = "real data / synthetic images/s (vitlight's own loader)", "real_ratio"
            rows = [r for r in report["rows"] if r["data"] == "real" and r["config"] == "vit_b16"] or [
                r for r in report["rows"] if r["data"] == "real"
            ]
        else:
            what, key = f"{name} MFU (measured matmul ceiling), torch.compile", "mfu_matmul"
            rows = [
                r for r in report["rows"] if r["config"] == name and r["mode"] == "compile" and r["data"] == "synthetic"
            ]
        row = rows[0] if rows else None
        value = row.get(key) if on_gpu and row and row["status"] == "ok" else None
        if not on_gpu:
            status = NOT_MEASURED
        elif value is None:
            status = f"not measured: {row['status']} {row.get('note', '')}".strip() if row else "not measured: not run"
        else:
            status = "met" if value >= target else "missed"
        where = f" ({row['config']})" if row and name == "real_data" else ""
        out.append({"goal": what + where, "target": target, "value": value, "status": status})
    return out


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: dict) -> str:
    env, ceilings = report["environment"], report["ceilings"]
    lines = [
        "# vitlight training step through Lightning (bench/gpu.py)",
        "",
        f"{env['date']}; {env['gpu'] or 'CPU'} ({env['cpus']} CPUs); Python {env['python']}, torch {env['torch']}, "
        f"CUDA {env['cuda']}, timm {env['timm']}, lightning {env['lightning']}; vitlight {env['vitlight_commit']}",
        "",
        f"Command: `{env['command']}`",
        "",
    ]
    if env["device"] != "cuda":
        lines += [
            "Measured on a CPU"
            + (" with --tiny shapes" if env.get("tiny") else "")
            + f": this checks that the script works; the GPU numbers are {NOT_MEASURED}.",
            "",
        ]
    peak = ceilings.get("datasheet_tflops")
    lines += [
        f"Ceilings: measured bf16 matmul ({ceilings.get('matmul_size')}-cube) "
        f"{_num(ceilings.get('matmul_tflops'), '.4g')} TFLOP/s; "
        f"datasheet dense bf16 {_num(peak, '.4g')} TFLOP/s" + ("" if peak else " (chip not in the table)"),
        "",
        "| model | mode | data | batch | precision | step ms | images/s | loader alone images/s | real/synthetic | "
        "TFLOP/s | MFU datasheet | MFU matmul | peak GiB | host syncs/step | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        status = r["status"] + (f": {r['note']}" if r.get("note") else "")
        lines.append(
            f"| {r['title']} | {r['mode']} | {r['data']} | {r['batch']} | {r['precision']} | "
            f"{_num(r.get('step_ms'), '.1f')} | "
            f"{_num(r.get('rate'), '.0f')} | {_num(r.get('loader_rate'), '.0f')} | {_num(r.get('real_ratio'), '.3f')} "
            "| "
            f"{_num(r.get('tflops'), '.3g')} | {_num(r.get('mfu_datasheet'), '.3f')} | "
            f"{_num(r.get('mfu_matmul'), '.3f')} | "
            f"{_num(r.get('peak_gib'), '.1f')} | {_num(r.get('syncs_per_step'), '.2f')} | {status} |"
        )
    conventions = {r["title"]: r for r in report["rows"] if r.get("flop_convention")}
    if conventions:
        lines += ["", "FLOPs counted (MFU's numerator):"]
        for title, r in conventions.items():
            share = r.get("masked_attention_share")
            extra = (
                f"; {share:.1%} of them are the masked half, so MFU over the unmasked work is "
                f"{1 - share:.3f} x the figure above"
                if share
                else ""
            )
            lines.append(f"- {title}: {r['flop_convention']}{extra}.")
    frames = [r for r in report["rows"] if "compiled_frames" in r]
    if frames:
        lines += ["", "Frames torch.compile compiled per compiled row (0: the switch compiled nothing):"]
        lines += [f"- {r['title']} {r['data']}: {r['compiled_frames']}" for r in frames]
    lines += ["", "| goal | target | measured | status |", "|---|---|---|---|"]
    lines += [f"| {g['goal']} | {g['target']} | {_num(g['value'], '.3f')} | {g['status']} |" for g in report["goals"]]
    callers = [(r, caller, n) for r in report["rows"] for caller, n in (r.get("syncs_by_caller") or {}).items()]
    if callers:
        lines += ["", "| host syncs in vitlight's code | mode | call | count |", "|---|---|---|---|"]
        lines += [f"| {r['title']} | {r['mode']} | {caller} | {n} |" for r, caller, n in callers]
    return "\n".join(lines) + "\n"


def write(report: dict, outs: list[str]) -> None:
    report["goals"] = goals(report)
    for out in outs:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n" if path.suffix == ".json" else markdown(report))
