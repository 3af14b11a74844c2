"""Starting from an image, driven like a person would: dropping an image on the input well (or
opening one), img2img strength, "Use as Input" on a result and on a history entry, restoring an
entry's input after its original file is gone, clearing back to text-to-image, refused files, and a
Kontext model that edits its input; on the stand-in engine and on the real tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog

import app.worker as worker_module
import mlx_flux.images as images_module
from app.jobs import batch_key
from app.params import InputImageChoice
from mlx_flux.images import kontext_size, load_image
from mlx_flux.metadata import read_request
from test_app_support import (TIMEOUT, FakePipeline, caching_loader, fake_loader, ready_window, type_prompt,
                              wait_ready)
from test_app_window import generate, use_settings_of_row


def write_image(path: Path, size=(200, 136), colour=(40, 120, 200)) -> Path:
    """A photo-like input: a gradient, so resizing and cropping change its pixels."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    arr = (np.asarray(colour, np.float32)[None, None] * 0.5 + x * 0.3 + y * 0.2).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGB").save(path)
    return path


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def drop_on_well(window, path: Path) -> bool:
    """Drag a file from the Finder onto the input well and let go."""
    well = window.inputImageView
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = QPointF(QPoint(well.width() // 2, well.height() // 2))
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(well, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(well, drop)
    return True


def wait_input(qtbot, window) -> None:
    """Until the well has read the image (it is read and copied off the GUI thread)."""
    qtbot.waitUntil(lambda: not window.input_controller.is_loading(), timeout=TIMEOUT)


def type_strength(qtbot, window, value: str) -> None:
    spin = window.inputPanel.strengthSpin
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, value)
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def strength_shown(window) -> bool:
    return window.strengthSlider.isVisible() and window.inputPanel.strengthSpin.isVisible()


def size(window) -> tuple[int, int]:
    return window.widthSpin.value(), window.heightSpin.value()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


def fake_window(monkeypatch, qtbot, tmp_path, data_dir, pipe: FakePipeline, folder: str):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(worker_module, "load_pipeline", fake_loader(pipe))
    model = tmp_path / folder
    model.mkdir()
    return ready_window(qtbot, data_dir, model)


@pytest.fixture
def fake(monkeypatch, qtbot, tmp_path, data_dir):
    pipe = FakePipeline()
    window = fake_window(monkeypatch, qtbot, tmp_path, data_dir, pipe, "fake-model")
    yield window, pipe
    window.close()


@pytest.fixture
def fake_kontext(monkeypatch, qtbot, tmp_path, data_dir):
    pipe = FakePipeline(variant="kontext", model_name="fake-kontext")
    window = fake_window(monkeypatch, qtbot, tmp_path, data_dir, pipe, "fake-kontext")  # guessed from the name
    yield window, pipe
    window.close()


# -- the stand-in engine: what the app hands it ----------------------------------------------------
def test_drop_on_the_well_then_generate_is_img2img_with_the_strength_and_the_apps_copy(qtbot, fake, tmp_path,
                                                                                       data_dir):
    window, pipe = fake
    assert window.inputImageView.accessibleName() == "inputImageView"
    assert "Drop an image here to start from it" in window.inputImageView.placeholder()
    assert not strength_shown(window)  # text-to-image: nothing to be strong about

    photo = write_image(tmp_path / "photos" / "holiday.png", (200, 136))
    assert drop_on_well(window, photo)
    wait_input(qtbot, window)
    fingerprint = load_image(photo).ref.fingerprint
    stored = window.inputPanel.stored()
    assert stored is not None and stored.fingerprint == fingerprint and stored.name == "holiday.png"
    assert strength_shown(window) and window.inputPanel.strength() == 0.6
    assert size(window) == (192, 128)  # the image's own size, rounded down to 16
    copy = data_dir / "inputs" / f"{fingerprint}.png"
    assert copy.is_file() and Path(stored.choice.path) == copy
    assert load_image(copy).ref.fingerprint == fingerprint  # the copy is the same pixels

    type_strength(qtbot, window, "0.35")
    assert window.strengthSlider.value() == 35
    type_prompt(qtbot, window, "the same scene at night")
    result = generate(qtbot, window)
    call = pipe.calls[-1]
    assert call["image"] == str(copy) and call["strength"] == 0.35 and call["mode"] == "img2img"
    assert (call["width"], call["height"]) == (192, 128)
    saved = read_request(result.saved_path)
    assert saved.mode == "img2img" and saved.strength == 0.35 and saved.image.fingerprint == fingerprint
    assert result.params.input == InputImageChoice(str(copy))
    assert f"img2img 0.35 from {fingerprint[:6]}…" in window.imageInfoLabel.text()
    assert f"img2img 0.35 from {fingerprint[:6]}…" in window.historyModel.index(0).data(Qt.ItemDataRole.ToolTipRole)

    # The same image again: the copy is not written twice.
    before = copy.stat().st_mtime_ns
    assert drop_on_well(window, photo)
    wait_input(qtbot, window)
    assert copy.stat().st_mtime_ns == before
    assert sorted(p.name for p in (data_dir / "inputs").glob("*.png")) == [copy.name]

    # Clear: back to text-to-image.
    qtbot.mouseClick(window.inputPanel.clearInputButton, Qt.MouseButton.LeftButton)
    assert window.inputPanel.stored() is None and not strength_shown(window)
    assert not window.inputPanel.clearInputButton.isVisible()
    generate(qtbot, window)
    assert pipe.calls[-1]["image"] is None and pipe.calls[-1]["mode"] == "text-to-image"
    assert pipe.calls[-1]["strength"] is None


def test_open_input_image_from_the_dialog_and_a_dropped_file_elsewhere_still_restores(qtbot, fake, tmp_path,
                                                                                    monkeypatch):
    window, pipe = fake
    photo = write_image(tmp_path / "photo.png", (96, 80))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(photo), "Images")))
    qtbot.mouseClick(window.inputPanel.openInputButton, Qt.MouseButton.LeftButton)
    wait_input(qtbot, window)
    assert window.inputPanel.stored().fingerprint == load_image(photo).ref.fingerprint
    assert size(window) == (96, 80)
    # The File menu has it too.
    assert window.openInputAction.text() == "Open Input Image…"

    # A foreign image dropped on the window (not the well) restores nothing and says where to drop it.
    from test_app_window import drop_file

    assert drop_file(window, photo)
    assert "no mlx-flux settings" in window.messageLabel.text() and "input image well" in window.messageLabel.text()


def test_an_unreadable_or_huge_image_is_refused_with_one_line(qtbot, fake, tmp_path, monkeypatch):
    window, pipe = fake
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    assert drop_on_well(window, broken)
    wait_input(qtbot, window)
    message = window.messageLabel.text()
    assert window.messageBar.isVisible() and "Could not use that image as input" in message and "broken.png" in message
    assert "\n" not in message
    assert window.inputPanel.stored() is None and not strength_shown(window)

    good = write_image(tmp_path / "good.png", (64, 64))
    assert drop_on_well(window, good)
    wait_input(qtbot, window)
    monkeypatch.setattr(images_module, "MAX_INPUT_PIXELS", 100 * 100)
    huge = write_image(tmp_path / "huge.png", (200, 100))
    assert drop_on_well(window, huge)
    wait_input(qtbot, window)
    assert "larger than" in window.messageLabel.text() and "\n" not in window.messageLabel.text()
    assert window.inputPanel.stored().fingerprint == load_image(good).ref.fingerprint  # the earlier input stays

    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    assert not drop_on_well(window, notes)  # not offered as a drop target at all


def test_use_as_input_on_the_result_and_on_a_history_entry(qtbot, fake, tmp_path):
    window, pipe = fake
    assert not window.useAsInputButton.isEnabled()  # nothing in view yet
    type_prompt(qtbot, window, "a red house")
    first = generate(qtbot, window)
    assert window.useAsInputButton.isEnabled()
    qtbot.mouseClick(window.useAsInputButton, Qt.MouseButton.LeftButton)
    wait_input(qtbot, window)
    assert window.inputPanel.stored().fingerprint == load_image(first.saved_path).ref.fingerprint
    assert window.inputImageView.has_image()
    second = generate(qtbot, window, "the same house in snow")  # edit, then edit the edit
    assert read_request(second.saved_path).image.fingerprint == load_image(first.saved_path).ref.fingerprint

    # The history's context-menu action on the older entry.
    window.historyList.setCurrentIndex(window.historyModel.index(1))
    assert window.useEntryAsInputAction in window.historyList.actions()
    window.useEntryAsInputAction.trigger()
    wait_input(qtbot, window)
    assert window.inputPanel.stored().fingerprint == load_image(first.saved_path).ref.fingerprint
    # And the image's own context menu offers it.
    assert window.useAsInputAction in window.previewView.actions()


def test_restore_from_history_after_the_original_is_gone(qtbot, fake, tmp_path, data_dir):
    window, pipe = fake
    photo = write_image(tmp_path / "gone.png", (128, 96))
    fingerprint = load_image(photo).ref.fingerprint
    assert drop_on_well(window, photo)
    wait_input(qtbot, window)
    type_strength(qtbot, window, "0.8")
    generate(qtbot, window, "from a photo")
    photo.unlink()
    # Something else in the controls meanwhile.
    qtbot.mouseClick(window.inputPanel.clearInputButton, Qt.MouseButton.LeftButton)
    window.inputPanel.set_strength(0.3)  # hidden, but a value
    window.controls.set_size(512, 512)
    generate(qtbot, window, "plain text")

    use_settings_of_row(qtbot, window, 1)
    stored = window.inputPanel.stored()
    assert stored is not None and stored.fingerprint == fingerprint
    assert Path(stored.choice.path) == data_dir / "inputs" / f"{fingerprint}.png"
    assert window.inputImageView.has_image() and strength_shown(window)
    assert window.inputPanel.strength() == 0.8 and size(window) == (128, 96)
    calls = len(pipe.calls)
    qtbot.mouseClick(window.rerunButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert len(pipe.calls) == calls + 1 and pipe.calls[-1]["image"] == stored.choice.path
    assert pipe.calls[-1]["strength"] == 0.8

    # A text-to-image entry clears the well.
    use_settings_of_row(qtbot, window, 1)
    assert window.inputPanel.stored() is None and not strength_shown(window)

    # Without the app's copy: one line says so, the rest restores, and Re-run does not pretend.
    (data_dir / "inputs" / f"{fingerprint}.png").unlink()
    use_settings_of_row(qtbot, window, 2)
    assert window.promptEdit.toPlainText() == "from a photo"
    assert window.inputPanel.stored() is None
    assert "not in the app's data folder" in window.messageLabel.text()
    assert "\n" not in window.messageLabel.text()
    calls = len(pipe.calls)
    qtbot.mouseClick(window.rerunButton, Qt.MouseButton.LeftButton)
    assert len(pipe.calls) == calls and not window.queue.is_busy()


def test_batch_key_tells_inputs_apart(fake):
    window, _ = fake
    params = window.controls.params()
    assert batch_key(params) == batch_key(params.with_(seed=5))
    from dataclasses import replace

    assert batch_key(params) != batch_key(replace(params, input=InputImageChoice("/x/ab.png")))
    assert batch_key(replace(params, input=InputImageChoice("/x/ab.png"))) != \
        batch_key(replace(params, input=InputImageChoice("/x/cd.png")))


def test_several_images_from_one_input_are_one_batch(qtbot, fake, tmp_path):
    window, pipe = fake
    assert drop_on_well(window, write_image(tmp_path / "in.png", (64, 64)))
    wait_input(qtbot, window)
    window.countSpin.setValue(3)
    type_prompt(qtbot, window, "three of them")
    with qtbot.waitSignals([window.queue.finished] * 3, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert len(pipe.batch_calls) == 1 and pipe.batch_calls[0]["mode"] == "img2img"
    assert pipe.batch_calls[0]["image"] == window.inputPanel.stored().choice.path


def test_a_kontext_model_asks_for_the_image_to_edit(qtbot, fake_kontext, tmp_path):
    window, pipe = fake_kontext
    assert window.model_info.variant == "kontext"
    assert "Drop the image to edit" in window.inputImageView.placeholder()
    assert window.inputPanel.titleLabel.text() == "Image to edit"
    # Without an image a Kontext model makes a new image from the prompt (and says so in the well).
    assert "new image from the prompt" in window.inputImageView.placeholder()
    generate(qtbot, window, "a cat")
    assert pipe.calls[-1]["mode"] == "text-to-image"

    photo = write_image(tmp_path / "cat.png", (300, 200))
    assert drop_on_well(window, photo)
    wait_input(qtbot, window)
    assert not strength_shown(window)  # an edit has no strength
    assert size(window) == kontext_size(load_image(photo))
    window.controls.set_size(64, 64)  # a small output; the reference stays at the Kontext size
    result = generate(qtbot, window, "make it a dog")
    call = pipe.calls[-1]
    assert call["mode"] == "edit" and call["strength"] is None and call["image"] == window.inputPanel.stored().choice.path
    saved = read_request(result.saved_path)
    assert saved.mode == "edit" and saved.strength is None
    assert (saved.image.width, saved.image.height) == kontext_size(load_image(photo))
    assert f"edit of {saved.image.fingerprint[:6]}…" in window.imageInfoLabel.text()


# -- the real engine ------------------------------------------------------------------------------
@pytest.fixture
def real(monkeypatch, qtbot, data_dir, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader())

    def open_on(model: Path):
        window = ready_window(qtbot, data_dir, model)
        windows.append(window)
        return window

    windows: list = []
    yield open_on
    for window in windows:
        window.close()


def test_real_img2img_round_trip_through_the_history(qtbot, real, tmp_path, tiny_schnell, data_dir):
    window = real(tiny_schnell)
    photo = write_image(tmp_path / "in" / "start.png", (80, 64))
    fingerprint = load_image(photo).ref.fingerprint
    assert drop_on_well(window, photo)
    wait_input(qtbot, window)
    assert strength_shown(window) and size(window) == (80, 64)
    type_strength(qtbot, window, "0.5")
    window.controls.set_seed(11, lock=True)
    first = generate(qtbot, window, "a lighthouse at dusk")
    saved = read_request(first.saved_path)
    assert saved.mode == "img2img" and saved.strength == 0.5 and saved.image.fingerprint == fingerprint
    assert (data_dir / "inputs" / f"{fingerprint}.png").is_file()
    assert (saved.width, saved.height) == (80, 64)

    # Edit the edit: the result becomes the input.
    qtbot.mouseClick(window.useAsInputButton, Qt.MouseButton.LeftButton)
    wait_input(qtbot, window)
    assert window.inputPanel.stored().fingerprint == load_image(first.saved_path).ref.fingerprint
    second = generate(qtbot, window)
    assert read_request(second.saved_path).image.fingerprint == load_image(first.saved_path).ref.fingerprint

    # The original is gone; restoring the first entry fills the well from the app's copy, and
    # re-running it gives the same pixels.
    photo.unlink()
    use_settings_of_row(qtbot, window, 1)
    assert window.inputPanel.stored().fingerprint == fingerprint and window.inputImageView.has_image()
    assert window.inputPanel.strength() == 0.5
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(window.rerunButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert np.array_equal(pixels(blocker.args[0].saved_path), pixels(first.saved_path))
    # Generate with the restored controls is the same image too.
    again = generate(qtbot, window)
    assert np.array_equal(pixels(again.saved_path), pixels(first.saved_path))


def test_real_kontext_edits_the_input(qtbot, real, tmp_path, tiny_kontext, monkeypatch):
    # The reference is seen at a Kontext training resolution (about 1 Mpx): fine on a Mac, too slow
    # for a CPU test's VAE, so this tiny model "was trained" at tiny ones.
    monkeypatch.setattr(images_module, "KONTEXT_RESOLUTIONS", ((96, 64), (64, 64), (64, 96)))
    window = real(tiny_kontext)
    assert window.model_info.variant == "kontext"
    assert "Drop the image to edit" in window.inputImageView.placeholder()
    photo = write_image(tmp_path / "edit-me.png", (96, 64))
    assert drop_on_well(window, photo)
    wait_input(qtbot, window)
    assert not strength_shown(window) and size(window) == (96, 64)
    window.controls.set_size(80, 64)
    window.stepsSlider.setValue(2)
    result = generate(qtbot, window, "make it blue")
    saved = read_request(result.saved_path)
    assert saved.mode == "edit" and saved.strength is None
    assert saved.image.fingerprint == load_image(photo).ref.fingerprint
    assert (saved.width, saved.height) == (80, 64) and (saved.image.width, saved.image.height) == (96, 64)
