"""Time the CUDA kernels of the goursat ops alone (no path transforms, no static kernel).

    python3 tools/bench_cuda_ops.py [--json PATH] [--label NAME]

For each shape and dtype: the forward (value only) and the backward with K recomputed, in
milliseconds, the median of CUDA-event timings of `--repeats` launches after a warm-up. The
increments are random, scaled so that kernel values stay O(1). Used to compare kernel
variants side by side on one GPU (each variant's build imported in its own process).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

import torch_sigkernel  # noqa: F401  (registers the ops)

ops = torch.ops.sigkernel

# (batch, m1, m2, λ): many short pairs, mid-sized batches, one long pair.
SHAPES = [
    (1024, 63, 63, 1),
    (32, 127, 127, 0),
    (32, 255, 255, 1),
    (8, 1023, 1023, 0),
    (1, 2047, 2047, 0),
    (4, 4095, 4095, 0),
]


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="also write the rows as JSON to PATH")
    parser.add_argument("--label", default="", help="a name for this build, written in each row")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for dtype in (torch.float32, torch.float64):
        for batch, m1, m2, lam in SHAPES:
            gen = torch.Generator().manual_seed(0)
            scale = 1.0 / (m1 * m2) ** 0.5
            inc = (torch.randn(batch, m1, m2, generator=gen, dtype=torch.float64) * scale).to("cuda", dtype)
            seed = torch.ones(batch, dtype=dtype, device="cuda")
            order = [lam, lam]
            row = {
                "label": args.label,
                "case": f"B={batch} m={m1}x{m2} lambda={lam}",
                "dtype": str(dtype).replace("torch.", ""),
                "fwd_ms": median_ms(lambda i=inc, o=order: ops.goursat(i, o, False, 1), args.repeats),
                "bwd_ms": median_ms(
                    lambda s=seed, i=inc, o=order: ops.goursat_backward(s, i, o, False, None, 1), args.repeats
                ),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
