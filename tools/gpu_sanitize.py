"""Exercise every CUDA kernel path of the sigkernel ops once, for compute-sanitizer.

Run on a GPU machine under NVIDIA's checker (tools/gpu_check.sh does):
    compute-sanitizer --tool memcheck --error-exitcode 3 python3 tools/gpu_sanitize.py
    compute-sanitizer --tool racecheck --error-exitcode 3 python3 tools/gpu_sanitize.py --small

Paths covered: forward with and without the grid; backward with the value or the grid as seed,
with K read from a given grid, recomputed whole, or checkpointed (a workspace over the 1 GiB
budget); diagonals in shared memory (packed and single-pair blocks) and in global workspace
(a longest diagonal of more than 2,048 float64 nodes); both dtypes; the linear op. Numbers are
checked elsewhere (test/test_cuda.py): this script only reports that every launch finished.
"""

from __future__ import annotations

import argparse
import time

import torch

import torch_sigkernel  # noqa: F401  (registers the ops)

ops = torch.ops.sigkernel


def exercise(increments: torch.Tensor, order: list[int]) -> None:
    """Forward (value and grid) and every backward variant of one problem."""
    grid = ops.goursat(increments, order, True, 1)
    ops.goursat(increments, order, False, 1)
    seed = torch.randn(increments.shape[0], dtype=increments.dtype, device=increments.device)
    ops.goursat_backward(seed, increments, order, False, None, 1)
    ops.goursat_backward(seed, increments, order, False, grid, 1)
    grid_seed = torch.randn_like(grid)
    ops.goursat_backward(grid_seed, increments, order, True, None, 1)
    ops.goursat_backward(grid_seed, increments, order, True, grid, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="shared-memory paths only (for racecheck)")
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.perf_counter()
    cases = [((3, 4, 5), [1, 2]), ((2, 1, 1), [0, 0]), ((64, 3, 3), [0, 1]), ((2, 40, 70), [2, 1])]
    if not args.small:
        cases += [((1, 64, 64), [5, 5])]  # 2,049 nodes per side: float64 diagonals in global memory
    for dtype in (torch.float64, torch.float32):
        for shape, order in cases:
            exercise(torch.randn(*shape, dtype=dtype, device="cuda") * 0.3, order)
        dx = torch.randn(3, 7, 4, dtype=dtype, device="cuda") * 0.3
        dy = torch.randn(3, 5, 4, dtype=dtype, device="cuda") * 0.3
        out = ops.goursat_linear(dx, dy, [1, 1], False, 1)
        ops.goursat_linear_backward(torch.ones_like(out), dx, dy, [1, 1], False, None, 1)
    if not args.small:
        # 8 pairs of 4,097 x 4,097 nodes: all diagonals would need 2.1 GB, over the budget,
        # so the backward keeps checkpoints and recomputes slabs.
        increments = torch.randn(8, 64, 64, dtype=torch.float64, device="cuda") / 64
        seed = torch.ones(8, dtype=torch.float64, device="cuda")
        ops.goursat_backward(seed, increments, [6, 6], False, None, 1)
    torch.cuda.synchronize()
    print(f"gpu_sanitize: every launch finished in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
