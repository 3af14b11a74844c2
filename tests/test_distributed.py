"""Scale-out: data parallel and --split-model under `mlx.launch -n 2 --backend ring` over loopback,
compared pixel for pixel with a single-process run; plus the pieces they are made of, in process."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from PIL import Image

from mlx_flux import distributed
from mlx_flux.metadata import read_metadata
from mlx_flux.transformer import FluxConfig, load_transformer

BIN = Path(sys.executable).parent
SCRIPT, LAUNCH = BIN / "mlx-flux", BIN / "mlx.launch"
PROMPT = "a red fox in the snow"
ARGS = ["--prompt", PROMPT, "--width", 48, "--height", 32, "--steps", 2, "--quiet"]
SEEDS = "3,4,5"  # odd: one rank makes two images, the other one


def run(cmd, cwd, timeout=240):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for var in ("MLX_RANK", "MLX_HOSTFILE", "MLX_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE"):
        env.pop(var, None)  # never inherit a launcher's identity
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def free_port_pair() -> int:
    """A port p with p and p+1 free: the ring backend listens on one port per rank."""
    for _ in range(50):
        port = random.randrange(20000, 60000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def single_run(tiny_schnell, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    proc = run([SCRIPT, "generate", "--model", tiny_schnell, *ARGS, "--seeds", SEEDS,
                "--output", out / "flux-{seed}.png"], cwd=out)
    assert proc.returncode == 0, proc.stderr
    return out


def assert_same_images(out: Path, reference: Path) -> None:
    for seed in SEEDS.split(","):
        name = f"flux-{seed}.png"
        np.testing.assert_array_equal(pixels(out / name), pixels(reference / name))
        assert read_metadata(out / name) == read_metadata(reference / name)


def test_data_parallel_under_mlx_launch(tiny_schnell, single_run, tmp_path):
    """Seeds split across two ranks; rank 0 gathers and writes all three images, rank 1 nothing."""
    proc = run([LAUNCH, "-n", 2, "--backend", "ring", "--starting-port", free_port_pair(), "--cwd", tmp_path,
                "--", SCRIPT, "generate", "--model", tiny_schnell, *ARGS, "--seeds", SEEDS,
                "--output", tmp_path / "flux-{seed}.png"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flux-3.png", "flux-4.png", "flux-5.png"]
    assert proc.stdout.split() == [str(tmp_path / f"flux-{s}.png") for s in (3, 4, 5)]  # printed once, by rank 0
    assert_same_images(tmp_path, single_run)


def test_split_model_under_mlx_launch_with_a_hostfile(tiny_schnell, single_run, tmp_path):
    """Blocks split across two ranks (activations sent each step), launched the way the README
    tells a two-Mac user to, with a hostfile (here both hosts are this machine)."""
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([{"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}] * 2))
    out = tmp_path / "out"
    out.mkdir()
    proc = run([LAUNCH, "--hostfile", hostfile, "--backend", "ring", "--starting-port", free_port_pair(),
                "--cwd", out, "--", SCRIPT, "generate", "--model", tiny_schnell, *ARGS, "--seeds", SEEDS,
                "--split-model"], cwd=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["flux-3.png", "flux-4.png", "flux-5.png"]
    assert_same_images(out, single_run)


# --- in process -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_partition_covers_every_block_once_in_order(size):
    for config in (FluxConfig(), FluxConfig(depth=2, depth_single_blocks=2, hidden_size=32, num_heads=2,
                                            axes_dim=(4, 6, 6))):
        slices = distributed.partition(config, size)
        assert len(slices) == size
        doubles = [i for d, _ in slices for i in d]
        singles = [i for _, s in slices for i in s]
        assert doubles == list(range(config.depth)) and singles == list(range(config.depth_single_blocks))
        for (d, s), (d2, _) in zip(slices, slices[1:]):  # no rank holds single blocks before another's doubles
            assert not (len(s) and len(d2))


def test_partition_balances_the_real_model():
    from mlx.utils import tree_flatten

    from mlx_flux.layers import DoubleStreamBlock, SingleStreamBlock

    def count(block) -> int:  # parameters of the real block (lazy: nothing is allocated)
        return sum(v.size for _, v in tree_flatten(block.parameters()))

    double, single = count(DoubleStreamBlock(3072, 24, 4.0)), count(SingleStreamBlock(3072, 24, 4.0))
    for size in (2, 3, 4):
        loads = [len(d) * double + len(s) * single for d, s in distributed.partition(FluxConfig(), size)]
        print(size, [f"{x / 1e9:.2f}B" for x in loads])
        assert max(loads) / min(loads) < 1.15, loads


@pytest.mark.parametrize("size", [2, 3, 6])
def test_chained_slices_equal_the_whole_model(tiny_schnell, size):
    """Each slice loaded alone (only its blocks' tensors), run one after the other as the ranks do:
    the velocity is bit for bit the unsplit model's. Size 6 leaves two ranks without blocks."""
    from mlx_flux import sampler
    from mlx_flux.loading import find_files

    files = find_files(tiny_schnell)
    whole = load_transformer(files.transformer, dtype="float32")
    config = whole.config
    rng = np.random.default_rng(0)
    b, h16, w16, txt_len = 2, 2, 3, 5
    txt = mx.array(rng.standard_normal((b, txt_len, config.context_in_dim)).astype(np.float32))
    y = mx.array(rng.standard_normal((b, config.vec_in_dim)).astype(np.float32))
    img = mx.array(rng.standard_normal((b, h16 * w16, config.in_channels)).astype(np.float32))
    t = mx.array([0.7, 0.3])
    cond = whole.prepare(txt, y, sampler.image_ids(h16 * 16, w16 * 16), sampler.text_ids(txt_len))
    expected = np.array(whole.step(img, t, cond))

    slices = [distributed.load_split_transformer(files, r, size, mx.float32) for r in range(size)]
    for part, (d, s) in zip(slices, distributed.partition(config, size)):
        assert len(part.double_blocks) == len(d) and len(part.single_blocks) == len(s)
    first = slices[0]
    silu_vec = distributed.modulation_vector(first, t, cond, b)
    x = mx.concatenate([cond.txt, first.img_in(img)], axis=1)
    for part in slices:
        x = distributed.run_blocks(part, x, silu_vec, cond.pe, txt_len)
    got = np.array(slices[-1].final_layer(x[:, txt_len:], silu_vec))
    np.testing.assert_array_equal(got, expected)


def test_a_slice_holds_only_its_own_blocks(tiny_schnell):
    from mlx.utils import tree_flatten

    from mlx_flux.loading import find_files

    files = find_files(tiny_schnell)
    whole = dict(tree_flatten(load_transformer(files.transformer, dtype="float32").parameters()))
    part = dict(tree_flatten(distributed.load_split_transformer(files, 1, 2, mx.float32).parameters()))
    (d, s) = distributed.partition(FluxConfig.from_diffusers(files.transformer_config), 2)[1]
    for name, value in part.items():
        if name.startswith(("double_blocks.", "single_blocks.")):
            kind, i, rest = name.split(".", 2)
            name = f"{kind}.{int(i) + (d if kind == 'double_blocks' else s).start}.{rest}"
        np.testing.assert_array_equal(np.array(value), np.array(whole[name]))
    n_blocks = {k.split(".")[0] + "." + k.split(".")[1] for k in part if k.startswith(("double_", "single_"))}
    assert len(n_blocks) == len(d) + len(s) < 4


def test_share_keeps_seed_order():
    seeds = [9, 8, 7, 6, 5]
    for size in (1, 2, 3, 7):
        shares = [distributed.share(seeds, r, size) for r in range(size)]
        assert sum(shares, []) == seeds


def test_world_size_from_the_launcher_environment(monkeypatch, tmp_path):
    for var in ("MLX_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MLX_HOSTFILE", "MLX_IBV_DEVICES",
                "MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.launched_world_size() == 1 and distributed.launched_rank() == 0
    hostfile = tmp_path / "ring.json"
    hostfile.write_text(json.dumps([["127.0.0.1:5000"], ["127.0.0.1:5001"], ["127.0.0.1:5002"]]))
    monkeypatch.setenv("MLX_HOSTFILE", str(hostfile))  # what mlx.launch --backend ring sets
    monkeypatch.setenv("MLX_RANK", "2")
    assert distributed.launched_world_size() == 3 and distributed.launched_rank() == 2
    hostfile.write_text("")  # mlx.launch -n 1
    assert distributed.launched_world_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")  # mpirun
    assert distributed.launched_world_size() == 4
