"""One rank of a `--split-model` transformer, started by `mlx.launch` (see test_distributed.py).

    mlx.launch -n N --backend ring -- python split_model_ranks.py MODEL CASES.npz OUT.npz

Every rank loads only its slice of the transformer. Rank 0 runs the real `SplitHead`: for each
case of CASES.npz in order, `prepare` once and `step` per noise level, as the pipeline does, and
writes the velocities to OUT.npz; the other ranks run the real `serve_blocks` until stopped.
"""

from __future__ import annotations

import sys

import mlx.core as mx
import numpy as np

from mlx_flux import distributed
from mlx_flux.loading import find_files


def main(model: str, cases: str, out: str) -> None:
    group = distributed.init_group()
    rank, size = group.rank(), group.size()
    part = distributed.load_split_transformer(find_files(model), rank, size, mx.float32)
    if rank != 0:
        distributed.serve_blocks(part, group)
        return

    head = distributed.SplitHead(part, group)
    data = dict(np.load(cases))
    velocities = {}
    try:
        for i in range(int(data["count"])):
            case = {k.split("/", 1)[1]: mx.array(v) for k, v in data.items() if k.startswith(f"{i}/")}
            cond = head.prepare(case["txt"], case["y"], case["img_ids"], case["txt_ids"])
            for j in range(case["img"].shape[0]):
                velocities[f"{i}/{j}"] = np.array(head.step(case["img"][j], case["t"][j], cond))
    finally:
        head.stop()
    np.savez(out, **velocities)


if __name__ == "__main__":
    main(*sys.argv[1:])
