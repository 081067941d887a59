"""ImageGPT sampling speed: key/value cache vs recomputing the whole prefix every step.

Completes the bottom half of a 32x32 image (512 new tokens after a 512-token prefix) with
a randomly initialised model, greedily so both paths must give the same tokens.

    python bench/sampling.py                                  # igpt-tiny, batch 8, CPU
    python bench/sampling.py --preset igpt-s --device cuda --batch 64

The last line is ``RATIO <recompute seconds / cached seconds>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

try:
    import vitlight  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitlight.models.igpt import IGPT_PRESETS, ImageGPT, igpt_config


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="igpt-tiny", choices=sorted(IGPT_PRESETS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--prefix", type=int, default=512, help="known tokens (top half of 32x32)")
    p.add_argument("--new_tokens", type=int, default=512, help="tokens to sample")
    p.add_argument("--vocab_size", type=int, default=512)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda given but CUDA is not available")
    if args.batch <= 0 or args.prefix < 0 or args.new_tokens <= 0:
        p.error("--batch and --new_tokens must be positive and --prefix non-negative")
    return args


def _timed(fn, device: str) -> tuple[torch.Tensor, float]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    torch.manual_seed(args.seed)
    total = args.prefix + args.new_tokens
    dtype = getattr(torch, args.dtype)
    cfg = igpt_config(args.preset, n_positions=total, vocab_size=args.vocab_size)
    model = ImageGPT(cfg).to(device=args.device, dtype=dtype).eval()
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    prefix = torch.randint(0, args.vocab_size, (args.batch, args.prefix), generator=g)
    prefix = prefix.to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"preset={args.preset} params={n_params / 1e6:.2f}M batch={args.batch} "
        f"device={args.device} dtype={args.dtype} prefix={args.prefix} "
        f"new_tokens={args.new_tokens} threads={torch.get_num_threads()}"
    )

    # Warm-up: first calls pay for kernel selection and allocator growth.
    warm = min(total, args.prefix + 4)
    for use_cache in (True, False):
        model.generate(prefix, warm, temperature=0.0, use_cache=use_cache)

    cached, t_cached = _timed(lambda: model.generate(prefix, total, temperature=0.0, use_cache=True), args.device)
    recomputed, t_recompute = _timed(
        lambda: model.generate(prefix, total, temperature=0.0, use_cache=False), args.device
    )
    tokens = args.batch * args.new_tokens
    print(f"cached     {t_cached:9.3f} s  {tokens / t_cached:10.1f} tokens/s")
    print(f"recompute  {t_recompute:9.3f} s  {tokens / t_recompute:10.1f} tokens/s")
    # Greedy decoding: any difference means the cache is wrong, not that sampling varied.
    print(f"same tokens: {torch.equal(cached, recomputed)}")
    print(f"RATIO {t_recompute / t_cached:.2f}")


if __name__ == "__main__":
    main()
