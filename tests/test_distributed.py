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
CHECKOUT = Path(distributed.__file__).parents[1]  # the mlx_flux under test, for the processes a test starts


def run(cmd, cwd, timeout=240, env=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    for var in ("MLX_RANK", "MLX_HOSTFILE", "MLX_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE"):
        env.pop(var, None)  # never inherit a launcher's identity
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def free_ports(count: int = 2) -> int:
    """A port p with p .. p+count-1 free: the ring backend listens on one port per rank."""
    for _ in range(50):
        port = random.randrange(20000, 60000)
        sockets = [socket.socket() for _ in range(count)]
        try:
            for i, s in enumerate(sockets):
                s.bind(("127.0.0.1", port + i))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} free ports in a row")


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
    proc = run([LAUNCH, "-n", 2, "--backend", "ring", "--starting-port", free_ports(), "--cwd", tmp_path,
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
    proc = run([LAUNCH, "--hostfile", hostfile, "--backend", "ring", "--starting-port", free_ports(),
                "--cwd", out, "--", SCRIPT, "generate", "--model", tiny_schnell, *ARGS, "--seeds", SEEDS,
                "--split-model"], cwd=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["flux-3.png", "flux-4.png", "flux-5.png"]
    assert_same_images(out, single_run)


def test_split_model_with_loras_equals_one_process(tiny_schnell, tmp_path):
    """Each rank applies its blocks' share of the LoRAs, renumbered to its slice (and rank 0 the
    CLIP part): the images equal a single process with the same LoRAs, bit for bit."""
    import lora_files

    dims = lora_files.Dims(hidden=32, mlp_ratio=4, in_channels=64, context=32, vec=24, depth=2, depth_single=2,
                           clip_hidden=24, clip_layers=2, clip_mlp=48)
    targets = [*lora_files.flux_targets(dims, guidance=False), *lora_files.clip_targets(dims)]  # schnell's layers
    style = lora_files.write_kohya(tmp_path / "style.safetensors", dims,
                                   lora_files.random_description(dims, seed=1, targets=targets))
    meta = launched_equals_single(["generate", "--model", tiny_schnell, *ARGS, "--seeds", "3", "--lora", style, "0.7"],
                                  "--split-model", tmp_path)
    assert meta["loras"][0]["scale"] == 0.7


@pytest.mark.parametrize("model, mode, how, extra", [
    ("tiny_kontext", "edit", "--split-model", []),
    ("tiny_schnell", "img2img", "--seeds=3,4,5", []),
    ("tiny_fill", "inpaint", "--split-model", ["--mask", "{mask}"]),
    ("tiny_fill", "outpaint", "--split-model", ["--expand", "16,0,16,0"]),
])
def test_image_inputs_under_mlx_launch_as_one_process(model, mode, how, extra, request, tmp_path):
    """Kontext's reference tokens (ids with first axis 1) go through the split model: the ranks
    get those ids from rank 0 and only the output's velocity comes back to the sampler; a Fill
    model's extra input channels (masked image, mask) reach rank 0's img_in; img2img seeds split
    across ranks start from the same encoded image."""
    Image.effect_mandelbrot((48, 32), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(tmp_path / "in.png")
    mask = Image.new("L", (48, 32))
    mask.paste(255, (8, 8, 32, 24))
    mask.save(tmp_path / "mask.png")
    extra = [str(a).format(mask=tmp_path / "mask.png") for a in extra]
    args = ["--prompt", PROMPT, "--steps", 2, "--quiet"] if "--expand" in extra else ARGS  # expand sets the size
    meta = launched_equals_single(["generate", "--model", request.getfixturevalue(model), *args, "--seeds", "3",
                                   "--image", tmp_path / "in.png", *extra], how, tmp_path)
    assert meta["mode"] == mode


def launched_equals_single(command: list, how: str, tmp_path: Path) -> dict:
    """Run `command` alone, then on two ranks with `how` added: flux-3.png is the same, bit for
    bit, with the same metadata (returned)."""
    single, launched = tmp_path / "single", tmp_path / "launched"
    single.mkdir()
    launched.mkdir()
    proc = run([SCRIPT, *command], cwd=single)
    assert proc.returncode == 0, proc.stderr
    proc = run([LAUNCH, "-n", 2, "--backend", "ring", "--starting-port", free_ports(), "--cwd", launched, "--",
                SCRIPT, *command, how], cwd=launched)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    np.testing.assert_array_equal(pixels(launched / "flux-3.png"), pixels(single / "flux-3.png"))
    assert read_metadata(launched / "flux-3.png") == read_metadata(single / "flux-3.png")
    return read_metadata(launched / "flux-3.png")


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


def grid_ids(rows: int, cols: int, first: int = 0) -> np.ndarray:
    """Ids (first, row, col) of a rows x cols token grid, in raster order."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.stack([np.full(rows * cols, first), r.ravel(), c.ravel()], axis=-1).astype(np.float32)


def kontext_ids(rows: int, cols: int, ref_rows: int, ref_cols: int) -> np.ndarray:
    """FLUX.1 Kontext's layout: the latents' grid, then the reference image's tokens, first id axis 1."""
    return np.concatenate([grid_ids(rows, cols), grid_ids(ref_rows, ref_cols, first=1)])


def split_model_cases(config: FluxConfig) -> list[dict[str, np.ndarray]]:
    """What rank 0 is asked to do, in order: each case is one `prepare` and a step per noise level."""
    rng = np.random.default_rng(0)

    def case(batch: int, txt_len: int, img_ids: np.ndarray, ts: list[list[float]], prompts: int = 1) -> dict:
        n = img_ids.shape[-2]
        return dict(
            txt=rng.standard_normal((prompts, txt_len, config.context_in_dim)).astype(np.float32),
            y=rng.standard_normal((prompts, config.vec_in_dim)).astype(np.float32),
            img_ids=img_ids, txt_ids=np.zeros((txt_len, 3), np.float32),
            img=rng.standard_normal((len(ts), batch, n, config.in_channels)).astype(np.float32),
            t=np.array(ts, np.float32),
        )

    return [
        case(2, 5, grid_ids(2, 3), [[0.7, 0.7], [0.3, 0.3]]),     # text-to-image; one prompt, a batch of 2
        case(1, 5, kontext_ids(2, 3, 2, 3), [[0.9], [0.5]]),      # a reference image as large as the latents
        case(2, 5, kontext_ids(2, 2, 1, 4), [[0.8, 0.4]], 2),     # ... whose ids span a 2 x 4 grid: same count
        case(1, 7, grid_ids(2, 3), [[0.6]]),                      # back to text-to-image, a longer prompt
        case(2, 5, np.stack([grid_ids(2, 3), grid_ids(2, 3) + [0, 1, 2]]), [[0.5, 0.5]]),  # ids per image
    ]


@pytest.mark.parametrize("size", [2, 5])
def test_split_model_step_equals_the_whole_model(tiny_schnell, tmp_path, size):
    """The real `SplitHead.step` and `serve_blocks` on `size` ranks of a ring over loopback, each rank
    holding only its slice: bit for bit `Flux.step` of the whole model, for any token ids (ranks > 0
    use the ids rank 0 sends, not a latent grid), across changes of ids, prompt length and batch.
    With 5 ranks one holds no block (it only passes things on) and one cut falls between single blocks."""
    from mlx_flux.loading import find_files

    whole = load_transformer(find_files(tiny_schnell).transformer, dtype="float32")
    assert [len(d) + len(s) for d, s in distributed.partition(whole.config, 5)].count(0) == 1
    cases = split_model_cases(whole.config)
    np.savez(tmp_path / "cases.npz", count=len(cases),
             **{f"{i}/{k}": v for i, c in enumerate(cases) for k, v in c.items()})

    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))}
    proc = run([LAUNCH, "-n", size, "--backend", "ring", "--starting-port", free_ports(size), "--cwd", tmp_path,
                "--", sys.executable, Path(__file__).parent / "split_model_ranks.py", tiny_schnell,
                tmp_path / "cases.npz", tmp_path / "split.npz"], cwd=tmp_path, env=env)
    assert proc.returncode == 0 and (tmp_path / "split.npz").is_file(), proc.stdout + proc.stderr
    got = np.load(tmp_path / "split.npz")

    for i, c in enumerate(cases):
        cond = whole.prepare(mx.array(c["txt"]), mx.array(c["y"]), mx.array(c["img_ids"]), mx.array(c["txt_ids"]))
        for j, (img, t) in enumerate(zip(c["img"], c["t"])):
            expected = np.array(whole.step(mx.array(img), mx.array(t), cond))
            np.testing.assert_array_equal(got[f"{i}/{j}"], expected, err_msg=f"case {i}, step {j}")

    # The case whose ids span a 2 x 4 grid: rebuilding the positions from the grid (as ranks > 0 once
    # did) gives as many tokens, and another velocity.
    c = cases[2]
    as_grid = whole.prepare(mx.array(c["txt"]), mx.array(c["y"]), mx.array(grid_ids(2, 4)), mx.array(c["txt_ids"]))
    assert not np.array_equal(np.array(whole.step(mx.array(c["img"][0]), mx.array(c["t"][0]), as_grid)),
                              got["2/0"])


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
