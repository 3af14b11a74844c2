"""One request, end to end, on the real engine with a tiny random model: what the engine says it
used is what the PNG holds, what the history holds, and what the controls produce after the
entry is restored; restoring and generating again makes the same pixels."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

import app.worker as worker_module
from test_app_support import TIMEOUT, caching_loader, ready_window, set_spin, small, type_prompt, wait_ready
from test_app_window import generate, use_settings_of_row


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader())


@pytest.mark.parametrize("model", ["tiny_schnell", "tiny_dev"])
def test_engine_png_history_and_controls_hold_the_same_request(qtbot, tmp_path, request, model):
    from mlx_flux.metadata import read_request

    window = ready_window(qtbot, tmp_path / "data", request.getfixturevalue(model))
    try:
        set_spin(qtbot, window.widthSpin, 80)
        set_spin(qtbot, window.seedSpin, 4242)
        window.stepsSlider.setValue(2)
        if window.guidanceSlider.isEnabled():
            window.guidanceSlider.setValue(42)  # 4.2
        result = generate(qtbot, window, "a round trip")
        made = result.request  # the engine's resolved request: every field filled in
        assert (made.prompt, made.width, made.height, made.steps, made.seed) == ("a round trip", 80, 64, 2, 4242)
        assert made.model == window.model_info.name and made.quantize is None
        assert made.guidance == (pytest.approx(4.2) if model == "tiny_dev" else None)

        assert read_request(result.saved_path) == made  # the PNG
        entry = window.historyModel.entry(0)
        assert entry.request == made and entry.choice == result.params.choice  # the history

        # Someone changes everything, then picks the entry: the controls say what made it.
        type_prompt(qtbot, window, "something else")
        small(qtbot, window, 128)
        set_spin(qtbot, window.seedSpin, 1)
        window.stepsSlider.setValue(3)
        use_settings_of_row(qtbot, window, 0)
        restored = window.controls.params()
        assert restored.choice == entry.choice
        assert restored.request == made.with_(model=None, quantize=None, mode=None)  # the fields the engine fills in

        # Generating from the restored settings makes the same image.
        with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT) as blocker:
            qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
        wait_ready(qtbot, window)
        again = blocker.args[0]
        assert again.request == made
        assert again.image == result.image and again.saved_path != result.saved_path
        assert read_request(again.saved_path) == made
    finally:
        window.close()
