"""Export as a person does it: click Export, get a proposed folder and name, write a file that
opens, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

import app.worker as worker_module
from mlx_flux.engine import GenerationResult
from test_app_support import TIMEOUT, FakePipeline, fake_loader, open_window, set_spin, type_prompt, wait_ready



class NoisyPipeline(FakePipeline):
    """Images full of detail (random noise), the hardest case for a JPEG encoder."""

    def _result(self, request) -> GenerationResult:
        pixels = np.random.default_rng(request.seed).integers(0, 256, (request.height, request.width, 3), np.uint8)
        return GenerationResult(image=Image.fromarray(pixels), latents=None, request=request)


def local_model(folder: Path) -> Path:
    """A model folder (the fake pipeline stands in for it): a hub model not on disk would open
    the model manager instead of generating."""
    model = folder / "fake-model"
    model.mkdir(exist_ok=True)
    return model


@pytest.fixture
def home(monkeypatch, tmp_path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return home


@pytest.fixture
def window(qtbot, tmp_path, home, monkeypatch):
    monkeypatch.setattr(worker_module, "load_pipeline", fake_loader(NoisyPipeline()))
    _, w = open_window(qtbot, tmp_path / "data", local_model(tmp_path))
    yield w
    w.close()


def make_image(qtbot, window, prompt: str, seed: int, size: int = 64) -> None:
    type_prompt(qtbot, window, prompt)
    set_spin(qtbot, window.widthSpin, size)
    set_spin(qtbot, window.heightSpin, size)
    qtbot.mouseClick(window.randomSeedCheck, Qt.MouseButton.LeftButton)  # untick: lock the seed
    set_spin(qtbot, window.seedSpin, seed)
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert window.exportButton.isEnabled()


class SaveDialog:
    """QFileDialog.getSaveFileName stand-in: records the proposed path, answers `answer`."""

    def __init__(self, monkeypatch) -> None:
        self.proposed: list[Path] = []
        self.answer: tuple[str, str] = ("", "")
        monkeypatch.setattr(QFileDialog, "getSaveFileName", self)

    def __call__(self, parent, caption, start, filters, *args, **kwargs):
        self.proposed.append(Path(start))
        return self.answer


def test_jpeg_export_of_a_detailed_full_size_image_works(qtbot, window, tmp_path, monkeypatch):
    make_image(qtbot, window, "static on an old television", 7, size=1024)
    dialog = SaveDialog(monkeypatch)
    dest = tmp_path / "out" / "static.jpg"
    dest.parent.mkdir()
    dialog.answer = (str(dest), "JPEG image (*.jpg *.jpeg)")
    qtbot.mouseClick(window.exportButton, Qt.MouseButton.LeftButton)
    assert not window.messageBar.isVisible(), window.messageBar.text()
    with Image.open(dest) as im:
        assert im.format == "JPEG" and im.size == (1024, 1024)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_exported_files_get_ordinary_permissions(qtbot, window, tmp_path, fmt):
    make_image(qtbot, window, "a lighthouse", 3)
    old = os.umask(0o022)
    try:
        written = window.export_to(tmp_path / f"lighthouse.{'jpg' if fmt == 'jpeg' else fmt}", fmt)
    finally:
        os.umask(old)
    assert written is not None and written.is_file()
    assert stat.S_IMODE(written.stat().st_mode) == 0o644  # readable by others, like any saved file


def test_export_proposes_pictures_and_a_name_from_the_prompt(qtbot, window, home, tmp_path, monkeypatch):
    (home / "Pictures").mkdir()
    make_image(qtbot, window, "A red fox, in snow! At dawn; very detailed fur and breath", 42)
    dialog = SaveDialog(monkeypatch)
    qtbot.mouseClick(window.exportButton, Qt.MouseButton.LeftButton)  # cancelled: nothing written
    assert dialog.proposed[-1] == home / "Pictures" / "a-red-fox-in-snow-at-seed42.png"

    # After exporting somewhere else, that folder is proposed next time.
    elsewhere = tmp_path / "exports"
    elsewhere.mkdir()
    dialog.answer = (str(elsewhere / "fox.png"), "")
    qtbot.mouseClick(window.exportButton, Qt.MouseButton.LeftButton)
    assert (elsewhere / "fox.png").is_file()
    qtbot.mouseClick(window.exportButton, Qt.MouseButton.LeftButton)
    assert dialog.proposed[-1].parent == elsewhere


def test_export_without_a_pictures_folder_proposes_home(qtbot, window, home, monkeypatch):
    make_image(qtbot, window, "snow", 5)
    dialog = SaveDialog(monkeypatch)
    qtbot.mouseClick(window.exportButton, Qt.MouseButton.LeftButton)
    assert dialog.proposed[-1] == home / "snow-seed5.png"


def test_default_name_is_short_and_safe():
    from app.export import default_name

    assert default_name("A red fox in snow", 42) == "a-red-fox-in-snow-seed42.png"
    name = default_name("../../etc/passwd: " + "verylongword" * 20, 1)
    assert "/" not in name and ".." not in name and len(name) <= 64
    assert default_name("   ", None) == "flux.png"
    assert default_name("Füchse im Schnee", 3, ".jpg") == "füchse-im-schnee-seed3.jpg"
