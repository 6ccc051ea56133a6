"""Peak memory of a Gram matrix: forward only (no grad) vs forward + backward, ours vs pySigLib.

Each measurement runs in a fresh subprocess and reports the growth of the peak resident set
size (ru_maxrss) over the process's baseline after imports and input creation.

    python tools/gram_memory.py                # 16x16 Gram, L=200, d=4, λ=1, float64
    python tools/gram_memory.py --batch 32 --length 300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, resource, sys
import torch
import torch_sigkernel as tsk
from torch_sigkernel.gram import sig_kernel_gram
batch, length, dim, order, library, mode = sys.argv[1:7]
batch, length, dim, order = int(batch), int(length), int(dim), int(order)
torch.manual_seed(0)
x = torch.randn(batch, length, dim, dtype=torch.float64) / (length * dim) ** 0.5
y = torch.randn(batch, length, dim, dtype=torch.float64) / (length * dim) ** 0.5
if library == "pysiglib":
    import pysiglib
    import pysiglib.torch_api as pt
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = peak()
if mode == "forward":
    with torch.no_grad():
        if library == "ours":
            gram = sig_kernel_gram(x, y, order)
        else:
            gram = pysiglib.sig_kernel_gram(x, y, dyadic_order=order)
else:
    x.requires_grad_(); y.requires_grad_()
    if library == "ours":
        gram = sig_kernel_gram(x, y, order)
    else:
        gram = pt.sig_kernel_gram(x, y, dyadic_order=order)
    gram.sum().backward()
print(json.dumps({"peak_bytes": peak() - base}))
"""


def measure(batch: int, length: int, dim: int, order: int, library: str, mode: str) -> int:
    args = [sys.executable, "-c", _CHILD, str(batch), str(length), str(dim), str(order), library, mode]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--dim", type=int, default=4)
    parser.add_argument("--dyadic-order", type=int, default=1)
    args = parser.parse_args()
    shape = (args.batch, args.length, args.dim, args.dyadic_order)
    print(f"{args.batch}x{args.batch} Gram, L={args.length}, d={args.dim}, λ={args.dyadic_order}, float64")
    print(f"{'library':10s} {'forward (no grad)':>18s} {'forward+backward':>18s} {'ratio':>7s}")
    for library in ("ours", "pysiglib"):
        forward = measure(*shape, library, "forward")
        both = measure(*shape, library, "backward")
        print(f"{library:10s} {forward / 2**20:15.1f} MB {both / 2**20:15.1f} MB {both / max(forward, 1):7.2f}")


if __name__ == "__main__":
    main()
