"""This machine's fp32 matmul rate (GFLOP/s), the yardstick that every time in the README goes with.

A timed run on one machine is scaled to another by the ratio of their rates:
    time_on_reference = time_here * rate_here / rate_reference
(the README's reference machine: 178 GFLOP/s). Multiplies two N x N float32 matrices
(2 N^3 FLOPs each) for --seconds after a warm-up, with torch's default thread count
(all cores, as a training run uses them); prints the median of --repeats such runs.

    python bench/matmul.py                 # 2048 x 2048, 3 x 2 s
    python bench/matmul.py --size 512 --seconds 0.2 --repeats 1

The last line is ``GFLOPS <rate>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def matmul_gflops(size: int, seconds: float) -> float:
    """FLOPs of float32 products of two size x size matrices per second, over about `seconds`."""
    a = torch.randn(size, size, dtype=torch.float32)
    b = torch.randn(size, size, dtype=torch.float32)
    torch.mm(a, b)  # warm-up: thread pool and caches
    products, started = 0, time.perf_counter()
    while True:
        torch.mm(a, b)
        products += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return 2.0 * size**3 * products / elapsed / 1e9


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="matrix side (default 2048)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per repeat (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; the median is printed (default 3)")
    args = parser.parse_args(argv)
    rates = [matmul_gflops(args.size, args.seconds) for _ in range(args.repeats)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"fp32 matmul {args.size}x{args.size}, {torch.get_num_threads()} threads, load average {load:.2f}: "
        + ", ".join(f"{rate:.1f}" for rate in rates)
        + " GFLOP/s"
    )
    rate = statistics.median(rates)
    print(f"GFLOPS {rate:.1f}")
    return rate


if __name__ == "__main__":
    main()
