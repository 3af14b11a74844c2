"""First run and the model manager, against a stand-in hub on 127.0.0.1: the download size, no
hidden download on Generate, pause / resume across a restart, cancel, the licence sign-in,
offline failures with Retry, then the downloaded model generating offline. And bug 8: a LoRA
picked as a model file is named as such, with no download."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

import app.modelmanager as modelmanager
import app.modelsetup as modelsetup
import app.worker as worker_module
from test_app_support import TIMEOUT, open_window, small, type_prompt, wait_ready
from hub_server import GOOD_TOKEN, Repo, start_hub
from mlx_flux import downloads, hub as mlx_hub
from mlx_flux.errors import ModelNotFoundError

SCHNELL = "black-forest-labs/FLUX.1-schnell"
DEV = "black-forest-labs/FLUX.1-dev"
VAE = "vae/diffusion_pytorch_model.safetensors"
LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def server(monkeypatch, tmp_path, tiny_schnell, isolated):
    hub = start_hub(monkeypatch, tmp_path, {SCHNELL: Repo(tiny_schnell), DEV: Repo(tiny_schnell, gated=True)})
    yield hub
    hub.release.set()
    hub.stop()


@pytest.fixture
def offline_cache(monkeypatch, tmp_path, isolated):
    """An empty Hugging Face cache, offline (the tests' default): a new user's Mac without network."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, LEFT)


def manager(qtbot, window):
    window.modelManagerAction.trigger()  # File ▸ Models…
    dialog = window.findChild(modelmanager.ModelManagerDialog, "modelManagerDialog")
    qtbot.waitUntil(dialog.isVisible, timeout=TIMEOUT)
    return dialog


# -- first run ---------------------------------------------------------------------------------
def test_first_run_says_the_download_and_generate_opens_the_manager_not_a_download(
        qtbot, tmp_path, offline_cache, monkeypatch):
    loads = []
    monkeypatch.setattr(worker_module, "load_pipeline", lambda choice, progress: loads.append(choice))
    _, window = open_window(qtbot, tmp_path / "data")
    panel = window.findChild(modelsetup.FirstRunPanel, "firstRunPanel")
    assert panel.isVisible()
    assert "FLUX.1-schnell" in panel.label.text() and "about 33.7 GB" in panel.label.text()
    assert "Apache-2.0" in panel.label.text()

    type_prompt(qtbot, window, "a lighthouse")
    click(qtbot, window.generateButton)
    dialog = window.findChild(modelmanager.ModelManagerDialog, "modelManagerDialog")
    qtbot.waitUntil(lambda: dialog is not None and dialog.isVisible(), timeout=TIMEOUT)
    assert "33.7 GB" in window.messageBar.text()
    assert not window.queue.is_busy() and loads == []  # nothing loaded, nothing fetched
    row = dialog.rows[SCHNELL]
    assert row.stateLabel.text() == "Not downloaded"
    assert row.sizeLabel.text() == "about 33.7 GB download"  # offline: the recorded figure
    assert "Non-Commercial" in dialog.rows[DEV].licenceLabel.text()
    assert "Free on the disk" in dialog.diskLabel.text()
    window.close()


def test_first_run_panel_offers_download_and_opening_a_model(qtbot, tmp_path, offline_cache):
    _, window = open_window(qtbot, tmp_path / "data")
    panel = window.model_setup.panel
    assert window.openFolderAction in panel.openButton.menu().actions()
    assert window.openFileAction in panel.openButton.menu().actions()
    click(qtbot, panel.downloadButton)
    qtbot.waitUntil(lambda: window.model_setup.dialog is not None and window.model_setup.dialog.isVisible(),
                    timeout=TIMEOUT)
    window.close()


def test_the_precision_follows_the_macs_memory_unless_chosen(qtbot, tmp_path, offline_cache, monkeypatch):
    import app.machine as machine

    monkeypatch.setattr(machine, "IS_MAC", True)
    monkeypatch.setattr(machine, "physical_memory", lambda: 16 * 2**30)
    _, window = open_window(qtbot, tmp_path / "data")
    assert window.quantizeCombo.currentData() == 4
    dialog = manager(qtbot, window)
    assert "4-bit: this Mac has 16 GB of memory" in dialog.precisionLabel.text()
    window.quantizeCombo.setCurrentIndex(window.quantizeCombo.findData(None))  # full precision, chosen
    window.save_settings()
    window.close()
    _, again = open_window(qtbot, tmp_path / "data")
    assert again.quantizeCombo.currentData() is None  # the saved choice wins
    again.close()


def test_precision_rule():
    from app.machine import recommended_precision

    assert recommended_precision(16 * 2**30).bits == 4
    eight = recommended_precision(32 * 2**30)
    assert eight.bits == 8 and eight.reason == ("8-bit: this Mac has 32 GB of memory; full precision needs "
                                                "about 40 GB")
    assert recommended_precision(48 * 2**30).bits == 8
    assert recommended_precision(64 * 2**30).bits is None


# -- downloading -------------------------------------------------------------------------------
def vae_partial(tiny_schnell):
    """Where the VAE's bytes go while it downloads (the server holds it half way)."""
    import hashlib

    etag = hashlib.sha256((tiny_schnell / VAE).read_bytes()).hexdigest()
    return downloads.repo_folder(SCHNELL) / "blobs" / f"{etag}.incomplete"


def wait_progress(qtbot, row, tiny_schnell) -> None:
    partial = vae_partial(tiny_schnell)
    qtbot.waitUntil(lambda: partial.is_file() and partial.stat().st_size > 0, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: " of " in row.progressLabel.text() and row.progressBar.value() > 0, timeout=TIMEOUT)


def test_pause_resume_after_a_restart_then_generate_offline(qtbot, tmp_path, server, tiny_schnell, monkeypatch):
    from huggingface_hub import constants

    server.hold_after[VAE] = 2_000_000
    _, window = open_window(qtbot, tmp_path / "data")
    click(qtbot, window.model_setup.panel.downloadButton)
    dialog = window.model_setup.dialog
    row = dialog.rows[SCHNELL]
    listing = downloads.list_repo(SCHNELL)
    qtbot.waitUntil(lambda: row.sizeLabel.text() == f"{downloads.format_bytes(listing.total)} download",
                    timeout=TIMEOUT)  # online: the hub's real sizes, no "about"

    click(qtbot, row.downloadButton)
    wait_progress(qtbot, row, tiny_schnell)
    assert row.pauseButton.isVisible() and not row.downloadButton.isVisible()
    qtbot.waitUntil(lambda: "Downloading" in window.model_setup.panel.label.text(), timeout=TIMEOUT)
    with qtbot.waitSignal(window.model_setup.downloads.stopped, timeout=TIMEOUT):
        click(qtbot, row.pauseButton)
        assert row.stateLabel.text() == "Pausing…" and not row.pauseButton.isEnabled()
        server.release.set()  # the server sends on; the transfer stops at those bytes
    assert row.stateLabel.text().startswith("Partial")
    assert row.downloadButton.text() == "Resume"
    partial = vae_partial(tiny_schnell)
    assert list(partial.parent.glob("*.incomplete")) == [partial] and partial.stat().st_size > 0
    window.close()

    # A restart: a new window on the same cache resumes from the bytes on disk.
    server.hold_after.clear()
    have = partial.stat().st_size
    _, window = open_window(qtbot, tmp_path / "data")
    assert "partly downloaded" in window.model_setup.panel.label.text()
    dialog = manager(qtbot, window)
    row = dialog.rows[SCHNELL]
    assert row.downloadButton.text() == "Resume"
    with qtbot.waitSignal(window.model_setup.downloads.finished, timeout=TIMEOUT):
        click(qtbot, row.downloadButton)
    assert server.file_gets(VAE)[-1].range == f"bytes={have}-"
    assert row.stateLabel.text() == "On disk · complete" and row.useButton.isVisible()
    click(qtbot, row.useButton)
    assert window.controls.current_model() == SCHNELL
    assert not window.model_setup.panel.isVisible()

    # Offline from now on: the model loads from the cache and makes an image.
    server.stop()
    server.stop = lambda: None
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    small(qtbot, window)
    window.countSpin.setValue(1)
    type_prompt(qtbot, window, "a lighthouse at dusk")
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT) as done:
        click(qtbot, window.generateButton)
    wait_ready(qtbot, window)
    assert done.args[0].saved_path.is_file()
    assert mlx_hub.resolve(SCHNELL) == downloads.cache_state(SCHNELL).folder
    window.close()


def test_cancel_asks_first_then_removes_the_partial_download(qtbot, tmp_path, server, tiny_schnell, monkeypatch):
    asked = []
    monkeypatch.setattr(modelmanager, "confirm", lambda parent, title, text: asked.append(text) or True)
    server.hold_after[VAE] = 1_000_000
    _, window = open_window(qtbot, tmp_path / "data")
    row = manager(qtbot, window).rows[SCHNELL]
    click(qtbot, row.downloadButton)
    wait_progress(qtbot, row, tiny_schnell)
    with qtbot.waitSignal(window.model_setup.downloads.stopped, timeout=TIMEOUT) as stopped:
        click(qtbot, row.cancelButton)
        server.release.set()
    assert stopped.args == [SCHNELL, "cancelled"]
    assert asked and "remove the partial download" in asked[0]
    assert not list((downloads.repo_folder(SCHNELL) / "blobs").glob("*.incomplete"))
    assert downloads.cache_state(SCHNELL).bytes == 0
    assert row.stateLabel.text() == "Not downloaded" and row.downloadButton.text() == "Download"
    window.close()


def test_a_gated_model_shows_the_licence_flow_and_a_pasted_token_downloads_it(
        qtbot, tmp_path, server, monkeypatch):
    from huggingface_hub import constants

    opened, tokens = [], iter(["hf_wrong", GOOD_TOKEN])
    monkeypatch.setattr(modelmanager, "open_url", opened.append)
    monkeypatch.setattr(modelmanager, "ask_token", lambda parent: next(tokens))
    _, window = open_window(qtbot, tmp_path / "data")
    row = manager(qtbot, window).rows[DEV]
    click(qtbot, row.downloadButton)
    qtbot.waitUntil(row.gatePanel.isVisible, timeout=TIMEOUT)
    assert "FLUX.1-dev needs you to accept its licence on Hugging Face" in row.gateLabel.text()
    click(qtbot, row.openLicenceButton)
    assert opened == ["https://huggingface.co/black-forest-labs/FLUX.1-dev"]

    with qtbot.waitSignal(window.model_setup.downloads.tokenChecked, timeout=TIMEOUT):
        click(qtbot, row.pasteTokenButton)
    assert "not accepted" in row.gateLabel.text()
    with qtbot.waitSignal(window.model_setup.downloads.tokenChecked, timeout=TIMEOUT):
        click(qtbot, row.pasteTokenButton)
    assert "Signed in as tester" in row.gateLabel.text()
    assert (tmp_path / "hf-home" / "token").read_text() == GOOD_TOKEN == open(constants.HF_TOKEN_PATH).read()
    assert row.downloadButton.text() == "Retry"
    with qtbot.waitSignal(window.model_setup.downloads.finished, timeout=TIMEOUT):
        click(qtbot, row.downloadButton)
    assert row.stateLabel.text() == "On disk · complete"
    log = (tmp_path / "data" / "mlx-flux.log")
    assert GOOD_TOKEN not in (log.read_text() if log.exists() else "")
    assert GOOD_TOKEN not in window.messageBar.text()
    window.close()


def test_offline_failure_says_so_and_retry_downloads(qtbot, tmp_path, server, monkeypatch):
    from huggingface_hub import constants

    real = constants.ENDPOINT
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no network
    _, window = open_window(qtbot, tmp_path / "data")
    row = manager(qtbot, window).rows[SCHNELL]
    with qtbot.waitSignal(window.model_setup.downloads.failed, timeout=TIMEOUT):
        click(qtbot, row.downloadButton)
    assert row.errorLabel.isVisible() and row.errorLabel.text().startswith("Offline:")
    assert row.downloadButton.text() == "Retry"
    monkeypatch.setattr(constants, "ENDPOINT", real)  # back online
    with qtbot.waitSignal(window.model_setup.downloads.finished, timeout=TIMEOUT):
        click(qtbot, row.downloadButton)
    assert not row.errorLabel.isVisible() and row.stateLabel.text() == "On disk · complete"
    window.close()


# -- bug 8: a LoRA picked with Open Model File -------------------------------------------------
def write_lora(path):
    from safetensors.numpy import save_file

    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": np.zeros((4, 8), np.float32),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": np.zeros((24, 4), np.float32),
               "lora_unet_double_blocks_0_img_attn_qkv.alpha": np.array(4.0, np.float32)}, str(path))
    return path


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    """The repositories something tried to download (none is in the cache, and nothing downloads)."""
    tried: list[str] = []

    def no_download(repo_id, *args, **kwargs):
        tried.append(repo_id)
        raise ModelNotFoundError(f"{repo_id} is not in the cache")

    monkeypatch.setattr(mlx_hub, "download", no_download)
    return tried


def test_open_model_file_names_a_lora_and_downloads_nothing(qtbot, tmp_path, offline_cache, monkeypatch, fetched):
    import app.window as window_module

    lora = write_lora(tmp_path / "style.safetensors")
    monkeypatch.setattr(window_module.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(lora), "FLUX checkpoint (*.safetensors)"))
    _, window = open_window(qtbot, tmp_path / "data")
    window.openFileAction.trigger()  # File ▸ Open Model File… (a native dialog: no click possible)
    wait_ready(qtbot, window)
    assert window.messageBar.text() == ("“style.safetensors” is not a FLUX.1 model "
                                        "(it looks like a LoRA: add it in the LoRA list)")
    assert fetched == []
    assert window.controls.current_model() != str(lora)
    window.close()


def test_the_engine_names_a_lora_before_fetching_a_base(tmp_path, fetched):
    from mlx_flux.loading import find_files

    lora = write_lora(tmp_path / "style.safetensors")
    with pytest.raises(ModelNotFoundError, match="it looks like a LoRA"):
        find_files(lora)
    assert fetched == []


def test_quitting_during_a_download_keeps_its_bytes_and_the_next_start_resumes(
        qtbot, tmp_path, server, tiny_schnell):
    server.hold_after[VAE] = 2_000_000
    _, window = open_window(qtbot, tmp_path / "data")
    row = manager(qtbot, window).rows[SCHNELL]
    click(qtbot, row.downloadButton)
    wait_progress(qtbot, row, tiny_schnell)
    downloads_of_first = window.model_setup.downloads
    window.close()  # quit with the download running: it pauses
    server.release.set()
    qtbot.waitUntil(lambda: not downloads_of_first.is_running(SCHNELL), timeout=TIMEOUT)
    partial = vae_partial(tiny_schnell)
    have = partial.stat().st_size
    assert 0 < have < (tiny_schnell / VAE).stat().st_size

    server.hold_after.clear()
    _, window = open_window(qtbot, tmp_path / "data")
    row = manager(qtbot, window).rows[SCHNELL]
    assert row.stateLabel.text().startswith("Partial") and row.downloadButton.text() == "Resume"
    with qtbot.waitSignal(window.model_setup.downloads.finished, timeout=TIMEOUT):
        click(qtbot, row.downloadButton)
    assert server.file_gets(VAE)[-1].range == f"bytes={have}-"
    assert (downloads.cache_state(SCHNELL).folder / VAE).read_bytes() == (tiny_schnell / VAE).read_bytes()
    window.close()


def test_picking_a_hub_model_not_on_disk_offers_it_instead_of_loading(qtbot, tmp_path, offline_cache, monkeypatch):
    from test_app_support import FakePipeline, fake_loader

    loads = []
    monkeypatch.setattr(worker_module, "load_pipeline", fake_loader(FakePipeline(), loads))
    folder = tmp_path / "my-flux"
    folder.mkdir()
    _, window = open_window(qtbot, tmp_path / "data", folder)
    wait_ready(qtbot, window)
    assert len(loads) == 1 and not window.model_setup.panel.isVisible()
    window.modelCombo.setFocus()
    while window.controls.current_model() != "black-forest-labs/FLUX.1-Fill-dev":
        qtbot.keyClick(window.modelCombo, Qt.Key.Key_Up)  # as a person picks with the keyboard
    wait_ready(qtbot, window)
    assert len(loads) == 1  # no load, so no hidden 33 GB download
    assert window.model_setup.panel.isVisible() and "FLUX.1-Fill-dev" in window.model_setup.panel.label.text()
    assert window.modelStatusLabel.text() == "FLUX.1-Fill-dev · not downloaded"  # not "loads on Generate"
    window.close()


def test_models_is_the_first_item_of_the_file_menu_with_its_own_shortcut(qtbot, tmp_path, offline_cache):
    _, window = open_window(qtbot, tmp_path / "data")
    file_menu = window.menuBar().actions()[0].menu()
    assert file_menu.actions()[0] is window.modelManagerAction
    assert window.modelManagerAction.text() == "Models…"
    shortcut = window.modelManagerAction.shortcut()
    others = [a for a in window.findChildren(type(window.modelManagerAction)) if a is not window.modelManagerAction]
    assert not shortcut.isEmpty() and all(shortcut not in a.shortcuts() for a in others)
    window.close()


def test_off_a_mac_the_app_keeps_full_precision(monkeypatch):
    import app.machine as machine

    monkeypatch.setattr(machine, "IS_MAC", False)
    monkeypatch.setattr(machine, "physical_memory", lambda: 16 * 2**30)
    assert machine.recommended_precision().bits is None
