"""Preferences, the Edit and Window menus, and the notification for images finished in the
background, used as a person uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QApplication, QComboBox

import app.notify as notify_module
import app.preferences as preferences_module
import app.worker as worker_module
from test_app_support import TIMEOUT, FakePipeline, fake_loader, open_window, set_spin, type_prompt, wait_ready



def local_model(folder: Path) -> Path:
    """A model folder (the fake pipeline stands in for it): a hub model not on disk would open
    the model manager instead of generating."""
    model = folder / "fake-model"
    model.mkdir(exist_ok=True)
    return model


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # launch.ini lives there


@pytest.fixture
def pipe(monkeypatch) -> FakePipeline:
    pipe = FakePipeline()
    monkeypatch.setattr(worker_module, "load_pipeline", fake_loader(pipe))
    return pipe


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def window(qtbot, data_dir, pipe):
    _, w = open_window(qtbot, data_dir, local_model(data_dir.parent))
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    yield w
    w.close()


def open_preferences(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)  # Cmd+, on a Mac
    dialog = window.findChild(preferences_module.PreferencesDialog, "preferencesDialog")
    assert dialog is not None and dialog.isVisible()
    return dialog


def choose(qtbot, combo: QComboBox, data) -> None:
    """Pick the item with `data` with the arrow keys, as a keyboard user does."""
    combo.setFocus()
    target = combo.findData(data)
    key = Qt.Key.Key_Down if target > combo.currentIndex() else Qt.Key.Key_Up
    while combo.currentIndex() != target:
        qtbot.keyClick(combo, key)


def generate(qtbot, window, prompt: str = "a lighthouse", count: int = 1) -> None:
    type_prompt(qtbot, window, prompt)
    set_spin(qtbot, window.widthSpin, 64)
    set_spin(qtbot, window.heightSpin, 64)
    set_spin(qtbot, window.countSpin, count)
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)


def test_preferences_open_with_the_standard_shortcut_and_menu_role(qtbot, window):
    action = window.preferencesAction
    assert action.menuRole() == QAction.MenuRole.PreferencesRole
    assert window.menuBar().actions()[1].menu().actions()[-1] is action  # end of Edit (the app menu on a Mac)
    dialog = open_preferences(qtbot, window)
    assert dialog.dataFolderLabel.text() == str(window.data_dir.root)
    qtbot.mouseClick(dialog.closeButton, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()


def test_a_new_data_folder_is_used_from_the_next_launch(qtbot, window, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(preferences_module, "ask_folder", lambda parent, start: elsewhere)
    dialog = open_preferences(qtbot, window)
    qtbot.mouseClick(dialog.changeDataFolderButton, Qt.MouseButton.LeftButton)
    assert dialog.dataFolderNote.isVisible() and str(elsewhere) in dialog.dataFolderNote.text()
    assert dialog.dataFolderLabel.text() == str(window.data_dir.root)  # this session keeps its folder
    qtbot.mouseClick(dialog.closeButton, Qt.MouseButton.LeftButton)
    window.close()

    from app.main import create_app

    _, again = create_app(["mlx-flux-app"])  # no --data-dir: the folder chosen in Preferences
    qtbot.addWidget(again)
    try:
        assert again.data_dir.root == elsewhere.resolve()
        assert (elsewhere / "images").is_dir()
    finally:
        again.close()
    _, explicit = create_app(["mlx-flux-app", "--data-dir", str(tmp_path / "explicit")])  # --data-dir wins
    qtbot.addWidget(explicit)
    assert explicit.data_dir.root == (tmp_path / "explicit").resolve()
    explicit.close()


def test_the_default_precision_is_what_the_next_launch_starts_with(qtbot, window, data_dir):
    dialog = open_preferences(qtbot, window)
    assert dialog.defaultPrecisionCombo.currentData() == "auto"
    choose(qtbot, dialog.defaultPrecisionCombo, "8")
    qtbot.mouseClick(dialog.closeButton, Qt.MouseButton.LeftButton)
    window.close()

    _, again = open_window(qtbot, data_dir)
    assert again.quantizeCombo.currentData() == 8
    again.quantizeCombo.setCurrentIndex(again.quantizeCombo.findData(4))  # used this time: the default stays
    again.close()
    _, third = open_window(qtbot, data_dir)
    assert third.quantizeCombo.currentData() == 8
    dialog = open_preferences(qtbot, third)
    choose(qtbot, dialog.defaultPrecisionCombo, "full")
    third.close()
    _, fourth = open_window(qtbot, data_dir)
    assert fourth.quantizeCombo.currentData() is None
    fourth.close()


def test_without_live_previews_only_the_steps_are_shown(qtbot, window, pipe):
    previews, steps = [], []
    window.queue.preview.connect(previews.append)
    window.queue.progress.connect(lambda step, total, elapsed: steps.append(step))
    dialog = open_preferences(qtbot, window)
    assert dialog.livePreviewsCheck.isChecked()
    qtbot.mouseClick(dialog.livePreviewsCheck, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(dialog.closeButton, Qt.MouseButton.LeftButton)
    generate(qtbot, window)
    assert steps and not previews
    assert window.previewView.image().width() == 64  # the finished image still shows

    dialog = open_preferences(qtbot, window)
    qtbot.mouseClick(dialog.livePreviewsCheck, Qt.MouseButton.LeftButton)
    generate(qtbot, window, "a second lighthouse")
    assert len(previews) == 4  # schnell's four steps, one preview each


class Recorder:
    def __init__(self) -> None:
        self.calls: list = []

    def __call__(self, *args) -> None:
        self.calls.append(args)


@pytest.fixture
def background(monkeypatch):
    """The person is in another app: the badge numbers and the alerts are recorded."""
    state = {"active": False}
    badges, alerts = Recorder(), Recorder()
    monkeypatch.setattr(notify_module, "app_is_active", lambda window: state["active"])
    monkeypatch.setattr(QGuiApplication, "setBadgeNumber", badges)
    monkeypatch.setattr(notify_module, "alert", alerts)
    return state, badges, alerts


def test_images_finished_in_the_background_badge_the_icon_until_the_window_is_active(qtbot, window, background):
    state, badges, alerts = background
    generate(qtbot, window, count=3)
    assert window.notifier.badge_count == 3
    assert badges.calls[-1] == (3,)
    assert len(alerts.calls) == 1  # one notification for the batch, when it is done

    state["active"] = True  # the person comes back
    QApplication.sendEvent(window, QEvent(QEvent.Type.WindowActivate))
    assert window.notifier.badge_count == 0 and badges.calls[-1] == (0,)

    generate(qtbot, window, "seen as it happens")  # made while looking: no badge, no alert
    assert window.notifier.badge_count == 0 and len(alerts.calls) == 1


def test_notifications_can_be_turned_off(qtbot, window, background):
    _, badges, alerts = background
    dialog = open_preferences(qtbot, window)
    qtbot.mouseClick(dialog.notifyCheck, Qt.MouseButton.LeftButton)
    assert not window.settings.notify_finished
    generate(qtbot, window)
    assert window.notifier.badge_count == 0 and not badges.calls and not alerts.calls


def test_edit_menu_acts_on_the_focused_field(qtbot, window):
    clipboard = QGuiApplication.clipboard()
    type_prompt(qtbot, window, "a red fox")
    window.selectAllAction.trigger()
    window.cutAction.trigger()
    assert window.promptEdit.toPlainText() == "" and clipboard.text() == "a red fox"
    window.pasteAction.trigger()
    assert window.promptEdit.toPlainText() == "a red fox"
    window.undoAction.trigger()
    assert window.promptEdit.toPlainText() == ""
    window.redoAction.trigger()
    assert window.promptEdit.toPlainText() == "a red fox"

    qtbot.mouseClick(window.historySearch, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(window.historySearch, "whale")
    window.selectAllAction.trigger()
    window.copyAction.trigger()
    assert clipboard.text() == "whale"

    set_spin(qtbot, window.widthSpin, 512)
    window.selectAllAction.trigger()
    window.copyAction.trigger()
    assert clipboard.text().startswith("512")

    keys = {a.objectName(): a.shortcut() for a in (window.undoAction, window.copyAction, window.pasteAction)}
    assert keys["copyAction"] == QKeySequence(QKeySequence.StandardKey.Copy)
    assert keys["pasteAction"] == QKeySequence(QKeySequence.StandardKey.Paste)


def test_copy_without_a_text_field_copies_the_image(qtbot, window):
    generate(qtbot, window)
    window.previewView.setFocus()
    QGuiApplication.clipboard().clear()
    window.copyAction.trigger()
    assert QGuiApplication.clipboard().image().width() == 64


def test_window_menu_minimizes_zooms_and_brings_back(qtbot, window):
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Window")
    assert window.minimizeAction in menu.actions() and window.minimizeAction.shortcut() == QKeySequence("Ctrl+M")
    window.zoomAction.trigger()
    qtbot.waitUntil(window.isMaximized)
    window.zoomAction.trigger()
    qtbot.waitUntil(lambda: not window.isMaximized())
    window.minimizeAction.trigger()
    qtbot.waitUntil(window.isMinimized)
    window.mainWindowAction.trigger()
    qtbot.waitUntil(lambda: not window.isMinimized())
