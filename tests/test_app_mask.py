"""Inpainting and outpainting with a Fill model, driven like a person would: painting a mask on the
canvas with the mouse, undo (Ctrl+Z), invert, clear, the brush size keys, generating with the mask
or with an expanded canvas, and a history entry that brings its mask back; on the stand-in engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from test_app_image_input import drop_on_well, fake_window, wait_input, write_image
from test_app_support import FakePipeline, set_spin
from test_app_window import generate, use_settings_of_row


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def fill(monkeypatch, qtbot, tmp_path, data_dir):
    pipe = FakePipeline(variant="fill", model_name="fake-fill")
    window = fake_window(monkeypatch, qtbot, tmp_path, data_dir, pipe, "fake-fill")  # guessed from the name
    photo = write_image(tmp_path / "photos" / "room.png", (160, 128))
    assert drop_on_well(window, photo)
    wait_input(qtbot, window)
    qtbot.waitUntil(lambda: window.maskCanvas.isVisible())
    yield window, pipe
    window.close()


def at(canvas, x: float, y: float) -> QPoint:
    """The widget point over image pixel (x, y)."""
    rect = canvas.image_rect()
    scale = rect.width() / canvas.mask().width()
    return QPointF(rect.left() + x * scale, rect.top() + y * scale).toPoint()


def drag(canvas, points: list[tuple[float, float]]) -> None:
    """Press at the first point, move through the others, let go at the last."""
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(canvas, *points[0]))
    for p in points[1:]:
        QTest.mouseMove(canvas, at(canvas, *p))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(canvas, *points[-1]))


def mask(window) -> np.ndarray:
    return np.asarray(window.maskCanvas.mask_pil())


def paint_two_strokes(qtbot, window) -> tuple[np.ndarray, np.ndarray]:
    canvas = window.maskCanvas
    set_spin(qtbot, window.maskPanel.brushSizeSpin, 16)
    drag(canvas, [(20, 20), (40, 20), (60, 20)])
    first = mask(window).copy()
    drag(canvas, [(100, 100), (120, 100)])
    return first, mask(window).copy()


def test_painting_undo_invert_clear_and_brush_keys(qtbot, fill):
    window, _ = fill
    canvas = window.maskCanvas
    assert canvas.accessibleName() == "maskCanvas"
    assert window.inputPanel.inpaintButton.isChecked()  # a Fill model inpaints its input
    assert not window.strengthSlider.isVisible()
    assert mask(window).shape == (128, 160) and not mask(window).any()  # at the image's own resolution

    first, both = paint_two_strokes(qtbot, window)
    assert first[20, 20:61].min() == 255 and first[20 - 4:20 + 5, 40].min() == 255  # along the drag
    assert first[100, 110] == 0 and first[60, 80] == 0 and first[0, 159] == 0  # black elsewhere
    assert both[100, 100:121].min() == 255 and both[20, 40] == 255
    assert set(np.unique(both)) <= {0, 255}

    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the second stroke
    assert np.array_equal(mask(window), first)

    window.maskPanel.invertMaskButton.click()
    assert np.array_equal(mask(window), 255 - first)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(mask(window), first)
    window.maskPanel.clearMaskButton.click()
    assert not mask(window).any()
    window.maskPanel.undoMaskButton.click()
    assert np.array_equal(mask(window), first)

    # The eraser paints black.
    window.maskPanel.eraserButton.click()
    drag(canvas, [(40, 20), (40, 21)])
    assert mask(window)[20, 40] == 0 and mask(window)[20, 20] == 255
    window.maskPanel.eraserButton.click()

    size = canvas.brush_size()
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert canvas.brush_size() > size and window.maskPanel.brushSizeSpin.value() == canvas.brush_size()
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size() < size and window.maskPanel.brushSizeSpin.value() == canvas.brush_size()


def test_generate_hands_the_engine_the_mask_and_history_brings_it_back(qtbot, fill, data_dir):
    window, pipe = fill
    _, painted = paint_two_strokes(qtbot, window)
    result = generate(qtbot, window, "a cat on the sofa")

    call = pipe.calls[-1]
    assert call["mode"] == "inpaint" and call["strength"] is None and call["expand"] is None
    sent = Path(call["mask"])
    assert sent.parent == data_dir / "inputs"
    with Image.open(sent) as png:
        assert png.mode == "L"
        assert np.array_equal(np.asarray(png), painted)
    assert sent.stem == call["request"].mask.fingerprint
    assert result.params.request.mode == "inpaint"
    assert result.params.mask is not None and Path(result.params.mask.path) == sent

    # The result is in view; "Edit Mask" goes back to the mask.
    assert window.previewView.isVisible() and not window.maskCanvas.isVisible()
    assert window.maskViewButton.isVisible() and not window.maskViewButton.isChecked()
    qtbot.mouseClick(window.maskViewButton, Qt.MouseButton.LeftButton)
    assert window.maskCanvas.isVisible() and np.array_equal(mask(window), painted)

    # Another mask, then the history entry: its mask comes back.
    window.maskPanel.clearMaskButton.click()
    assert not mask(window).any()
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 1)
    use_settings_of_row(qtbot, window, 0)
    qtbot.waitUntil(lambda: mask(window).any())
    assert np.array_equal(mask(window), painted)
    assert window.maskCanvas.isVisible()

    # Remade from history: the same mask again.
    generate(qtbot, window)
    assert pipe.calls[-1]["mask"] == str(sent) and pipe.calls[-1]["mode"] == "inpaint"


def test_expand_canvas_outpaints_with_the_margins(qtbot, fill):
    window, pipe = fill
    panel = window.maskPanel
    set_spin(qtbot, panel.expandLeftSpin, 32)
    set_spin(qtbot, panel.expandRightSpin, 48)
    assert window.maskCanvas.margins() == (32, 0, 48, 0)
    generate(qtbot, window, "the rest of the room")
    call = pipe.calls[-1]
    assert call["expand"] == (32, 0, 48, 0) and call["mode"] == "outpaint" and call["mask"] is None
    assert (call["width"], call["height"]) == (160 + 80, 128)

    panel.expandPresetCombo.setCurrentText("Square")
    panel.expandPresetCombo.activated.emit(panel.expandPresetCombo.currentIndex())
    assert panel.expand() == (0, 16, 0, 16)
    panel.expandPresetCombo.activated.emit(panel.expandPresetCombo.findText("1.5× wider"))
    assert panel.expand() == (48, 0, 48, 0)
    generate(qtbot, window)
    assert pipe.calls[-1]["expand"] == (48, 0, 48, 0)


def test_a_fill_model_without_a_mask_says_what_to_do(qtbot, fill):
    window, pipe = fill
    from test_app_support import type_prompt

    type_prompt(qtbot, window, "a cat")
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert "Paint over what should be repainted" in window.messageLabel.text()
    assert not pipe.calls


# -- the real engine --------------------------------------------------------------------------------
def test_real_fill_model_inpaints_and_outpaints_from_the_canvas(qtbot, tmp_path, tiny_fill, monkeypatch, data_dir):
    """The whole loop on the tiny FLUX.1 Fill model: paint, generate, the PNG records the mask;
    then margins, generate, a larger image that records the expansion."""
    import app.worker as worker_module
    from mlx_flux.images import load_image
    from mlx_flux.metadata import read_request
    from test_app_support import caching_loader, ready_window

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader())
    window = ready_window(qtbot, data_dir, tiny_fill)
    try:
        assert window.model_info.variant == "fill"
        photo = write_image(tmp_path / "photos" / "room.png", (96, 64))
        assert drop_on_well(window, photo)
        wait_input(qtbot, window)
        qtbot.waitUntil(lambda: window.maskCanvas.isVisible())
        window.stepsSlider.setValue(2)
        set_spin(qtbot, window.maskPanel.brushSizeSpin, 8)
        drag(window.maskCanvas, [(10, 10), (30, 10)])
        painted = mask(window).copy()
        result = generate(qtbot, window, "a window with a view")
        saved = read_request(result.saved_path)
        assert saved.mode == "inpaint" and (saved.width, saved.height) == (96, 64)
        stored = data_dir / "inputs" / f"{saved.mask.fingerprint}.png"
        assert np.array_equal(np.asarray(Image.open(stored).convert("L")) > 127, painted > 127)
        assert saved.mask.fingerprint == load_image(stored).ref.fingerprint

        qtbot.mouseClick(window.maskPanel.clearMaskButton, Qt.MouseButton.LeftButton)
        set_spin(qtbot, window.maskPanel.expandLeftSpin, 16)
        set_spin(qtbot, window.maskPanel.expandRightSpin, 32)
        wider = generate(qtbot, window)
        out = read_request(wider.saved_path)
        assert out.mode == "outpaint" and out.expand == (16, 0, 32, 0)
        assert Image.open(wider.saved_path).size == (96 + 48, 64)
    finally:
        window.close()


def test_a_fill_model_gets_its_own_guidance(qtbot, fill):
    """FLUX.1 Fill's default guidance is 30: the slider must reach it (it stopped at 10 and sent 10)."""
    window, pipe = fill
    assert window.guidanceSlider.value() / 10 == 30.0 and window.guidanceSlider.maximum() >= 300
    drag(window.maskCanvas, [(20, 20), (40, 20)])
    generate(qtbot, window, "a lamp")
    assert pipe.calls[-1]["guidance"] == 30.0
