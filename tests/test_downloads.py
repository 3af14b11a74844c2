"""The download engine against a stand-in hub: the huggingface_hub cache layout, resume with
Range after a dropped connection or a pause, cancel, gated repositories, offline."""

from __future__ import annotations

import threading

import pytest

from hub_server import GOOD_TOKEN, Repo, start_hub
from mlx_flux import downloads, hub as mlx_hub
from mlx_flux.downloads import Download, DownloadError, Stopped, cache_state, list_repo

SCHNELL = "black-forest-labs/FLUX.1-schnell"
DEV = "black-forest-labs/FLUX.1-dev"
VAE = "vae/diffusion_pytorch_model.safetensors"


@pytest.fixture
def server(monkeypatch, tmp_path, tiny_schnell):
    hub = start_hub(monkeypatch, tmp_path, {SCHNELL: Repo(tiny_schnell), DEV: Repo(tiny_schnell, gated=True)})
    yield hub
    hub.release.set()
    hub.stop()


def test_listing_has_the_engines_files_and_their_real_sizes(server, tiny_schnell):
    listing = list_repo(SCHNELL)
    names = {f.path for f in listing.files}
    assert VAE in names and "model_index.json" in names
    assert "flux1-schnell.safetensors" not in names and "ae.safetensors" not in names  # BFL duplicates
    assert listing.total == sum((tiny_schnell / n).stat().st_size for n in names)
    assert cache_state(SCHNELL).state == "missing"


def test_download_writes_the_hub_cache_layout_that_resolve_finds_offline(server, tiny_schnell, monkeypatch):
    seen = []
    folder = Download(list_repo(SCHNELL), on_progress=seen.append).run()
    assert (folder / VAE).read_bytes() == (tiny_schnell / VAE).read_bytes()
    assert (folder / VAE).is_symlink() and (folder / VAE).resolve().parent.name == "blobs"
    assert seen[-1].done == seen[-1].total == list_repo(SCHNELL).total
    assert cache_state(SCHNELL).state == "complete"
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert mlx_hub.resolve(SCHNELL) == folder


def test_a_dropped_connection_resumes_with_a_range_request(server, tiny_schnell):
    server.drop_after[VAE] = 1_000_000
    folder = Download(list_repo(SCHNELL)).run()
    gets = server.file_gets(VAE)
    assert [g.range for g in gets] == [None, "bytes=1000000-"]
    assert (folder / VAE).read_bytes() == (tiny_schnell / VAE).read_bytes()


def test_pause_keeps_the_partial_file_and_a_new_download_resumes_it(server, tiny_schnell):
    server.hold_after[VAE] = 2_000_000
    listing = list_repo(SCHNELL)
    job = Download(listing)
    reached = threading.Event()

    def progress(p):
        if p.file == VAE and p.done > 0:
            reached.set()

    job.on_progress = progress
    outcome = []
    thread = threading.Thread(target=lambda: _run(job, outcome))
    thread.start()
    assert reached.wait(30)
    job.pause()
    server.release.set()  # the next bytes arrive; the pause is seen between two chunks
    thread.join(30)
    assert outcome == ["paused"]
    partial = list((downloads.repo_folder(SCHNELL) / "blobs").glob("*.incomplete"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < (tiny_schnell / VAE).stat().st_size
    assert cache_state(SCHNELL, listing).state == "partial"

    server.hold_after.clear()
    have = partial[0].stat().st_size
    folder = Download(list_repo(SCHNELL)).run()  # as after a restart: a new object, the same cache
    assert server.file_gets(VAE)[-1].range == f"bytes={have}-"
    assert (folder / VAE).read_bytes() == (tiny_schnell / VAE).read_bytes()
    assert not list((downloads.repo_folder(SCHNELL) / "blobs").glob("*.incomplete"))


def test_cancel_then_remove_partial_leaves_no_unfinished_bytes(server):
    server.hold_after[VAE] = 1_000_000
    job = Download(list_repo(SCHNELL))
    outcome = []
    thread = threading.Thread(target=lambda: _run(job, outcome))
    thread.start()
    _wait_for(lambda: list((downloads.repo_folder(SCHNELL) / "blobs").glob("*.incomplete")))
    job.cancel()
    server.release.set()
    thread.join(30)
    assert outcome == ["cancelled"]
    assert downloads.remove_partial(SCHNELL) > 0
    assert not list((downloads.repo_folder(SCHNELL) / "blobs").glob("*.incomplete"))


def test_a_gated_repository_says_so_and_a_token_opens_it(server):
    listing = list_repo(DEV)
    assert listing.gated
    with pytest.raises(DownloadError) as e:
        Download(listing).run()
    assert e.value.kind == "gated"
    folder = Download(listing, token=GOOD_TOKEN).run()
    assert (folder / VAE).is_file()
    assert all(r.token in (None, GOOD_TOKEN) for r in server.requests)


def test_offline_is_said_as_such(server):
    server.online = False
    with pytest.raises(DownloadError) as e:
        list_repo(SCHNELL)
    assert e.value.kind in ("offline", "network")


def _run(job, outcome):
    try:
        job.run()
        outcome.append("done")
    except Stopped as s:
        outcome.append(s.reason)


def _wait_for(condition, timeout=30.0):
    import time

    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end
        time.sleep(0.02)


def test_too_little_disk_space_is_said_before_anything_is_written(server, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DownloadError) as e:
        Download(list_repo(SCHNELL)).run()
    assert e.value.kind == "disk" and "has 1.0 kB free" in str(e.value)
    assert not list((downloads.repo_folder(SCHNELL) / "blobs").iterdir())


def test_a_complete_older_snapshot_counts_as_on_disk(server, tiny_schnell):
    from dataclasses import replace

    Download(list_repo(SCHNELL)).run()
    newer = replace(list_repo(SCHNELL), commit="f" * 40)  # the hub has moved on since
    state = cache_state(SCHNELL, newer)
    assert state.state == "complete" and state.folder.name == "0123456789abcdef0123456789abcdef01234567"


# -- the command line takes the same path ----------------------------------------------------------
def test_the_cli_downloads_into_the_cache_and_resumes_an_interrupted_file(server, tiny_schnell, tmp_path):
    """`mlx-flux download schnell` through the console script: the files the engine reads, into
    the cache layout, resumed with a Range request after a dropped connection; a second call
    finds it complete without asking the hub; a gated repository fails in one line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("mlx-flux")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home")}  # start_hub set the endpoint and the cache
    server.drop_after[VAE] = 3000  # the first transfer of the VAE breaks after 3000 bytes

    def cli(*args):
        return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=300)

    done = cli("download", "schnell")
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert (folder / VAE).read_bytes() == (tiny_schnell / VAE).read_bytes()
    assert any(r.path.endswith(VAE) and r.range for r in server.requests)  # resumed, not restarted
    assert not (folder / "flux1-schnell.safetensors").exists()  # only what the engine reads

    asked = len(server.requests)
    again = cli("download", "schnell")
    assert again.returncode == 0 and Path(again.stdout.strip()) == folder and len(server.requests) == asked

    gated = cli("download", "dev")
    assert gated.returncode == 1 and "Traceback" not in gated.stderr
    assert gated.stderr.strip().splitlines() == [
        f"mlx-flux: error: {DEV} needs you to accept its licence on Hugging Face and sign in: "
        "`hf auth login` (or HF_TOKEN) with an account that has accepted it"]
