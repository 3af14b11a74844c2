"""What the window says about its model after a failed load: the status line names the failure
(not "loads on Generate", which invites the same failure), and a later successful load takes
the stale "Could not load the model" banner away, and only that banner."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

import app.window as window_module
import app.worker as worker_module
from test_app_support import TIMEOUT, caching_loader, open_window, wait_ready
from test_app_window import choose_in_combo, drop_file


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader())


@pytest.fixture
def broken_window(qtbot, tmp_path):
    _, window = open_window(qtbot, tmp_path / "data", tmp_path / "broken-model")
    wait_ready(qtbot, window)
    yield window
    window.close()


def open_model_folder(qtbot, window, monkeypatch, folder) -> None:
    """File > Open Model Folder…, choosing `folder` in the dialog; waits for the load."""
    monkeypatch.setattr(window_module.QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
        window.openFolderAction.trigger()
    wait_ready(qtbot, window)


def test_a_failed_load_says_so_in_the_status_until_a_model_loads(qtbot, broken_window, monkeypatch, tiny_schnell):
    window = broken_window
    assert window.messageBar.kind == "error" and "Could not load the model" in window.messageLabel.text()
    status = window.modelStatusLabel
    assert status.text() == "broken-model · failed to load"
    reason = window.messageLabel.text().split(": ", 1)[1]
    assert reason and reason in status.toolTip()

    open_model_folder(qtbot, window, monkeypatch, tiny_schnell)
    assert status.text().endswith("· ready") and status.toolTip() == ""
    assert not window.messageBar.isVisible() and window.messageBar.kind == ""  # the stale error is gone


def test_a_successful_load_leaves_other_messages_alone(qtbot, broken_window, monkeypatch, tiny_schnell, tmp_path):
    from PIL import Image

    window = broken_window
    open_model_folder(qtbot, window, monkeypatch, tiny_schnell)
    foreign = tmp_path / "holiday.png"
    Image.new("RGB", (8, 8)).save(foreign)
    assert drop_file(window, foreign)  # a note about the dropped file, not about the model
    note = window.messageLabel.text()
    assert "no mlx-flux settings" in note

    with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
        choose_in_combo(qtbot, window.quantizeCombo, window.quantizeCombo.findData(8))  # a reload
    assert window.messageBar.isVisible() and window.messageLabel.text() == note


def test_changing_the_precision_of_a_model_that_failed_tries_it_again(qtbot, broken_window):
    window = broken_window
    with qtbot.waitSignal(window.queue.modelFailed, timeout=TIMEOUT):
        choose_in_combo(qtbot, window.quantizeCombo, window.quantizeCombo.findData(8))
    wait_ready(qtbot, window)
    assert window.modelStatusLabel.text() == "broken-model · failed to load"
    assert window.messageBar.kind == "error"
    qtbot.mouseClick(window.messageBar.closeButton, Qt.MouseButton.LeftButton)
    assert window.modelStatusLabel.text() == "broken-model · failed to load"  # the status still knows
