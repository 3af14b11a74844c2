"""Where the parts of the window meet, driven like a person would: a multi-row history selection
(grid, compare) while images finish, the entry actions with several rows selected, the arrow keys
and Quick Look while a run goes on, the progress between a batch's chunks, and the shortcuts."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

from test_app_support import TIMEOUT, FakePipeline, set_spin, type_prompt, wait_ready
from test_app_viewer import add_entries, colour_shown, ctrl_click_history_row, seed_colour
from test_app_window import click_history_row
from test_app_image_input import fake_window


@pytest.fixture
def pipe() -> FakePipeline:
    return FakePipeline()


@pytest.fixture
def window(monkeypatch, qtbot, tmp_path, pipe):
    w = fake_window(monkeypatch, qtbot, tmp_path, tmp_path / "data", pipe, "fake-model")
    w.resize(1200, 800)
    yield w
    w.close()


def start_generating(qtbot, window, pipe, prompt: str = "one more", count: int = 1) -> None:
    """Type a prompt and click Generate (slow steps); until its first preview is in view."""
    pipe.step_delay = 0.2
    set_spin(qtbot, window.countSpin, count)
    type_prompt(qtbot, window, prompt)
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.previewView.is_preview(), timeout=TIMEOUT)


@pytest.fixture
def trash(monkeypatch, tmp_path):
    """A stand-in Trash (as test_app_window's): moves files into a folder."""
    import app.historycontroller as controller

    folder = tmp_path / "Trash"
    folder.mkdir()
    monkeypatch.setattr(controller, "move_to_trash", lambda path: bool(Path(path).rename(folder / Path(path).name)) or True)
    return folder


def answer_box_recording(qtbot, button: str) -> list[str]:
    """Click `button` of the next modal message box; the list gets the box's question."""
    asked: list[str] = []

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        asked.append(box.text())
        qtbot.mouseClick(box.findChild(QPushButton, button), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, click)
    return asked


class BoxAnswers:
    """Clicks the buttons named, one per modal message box as each opens (any further box: the
    last button again, so that nothing is left hanging) until stopped; `asked` gets their questions."""

    def __init__(self, qtbot, buttons: list[str]) -> None:
        self.qtbot, self.buttons = qtbot, buttons
        self.asked: list[str] = []
        self._seen: list[QMessageBox] = []
        self._stopped = False
        QTimer.singleShot(0, self._click)

    def stop(self) -> None:
        self._stopped = True

    def _click(self) -> None:
        if self._stopped:
            return
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box not in self._seen:
            self._seen.append(box)
            self.asked.append(box.text())
            button = self.buttons[min(len(self.asked), len(self.buttons)) - 1]
            self.qtbot.mouseClick(box.findChild(QPushButton, button), Qt.MouseButton.LeftButton)
        QTimer.singleShot(20, self._click)


def selected_rows(window) -> list[int]:
    return sorted(index.row() for index in window.historyList.selectionModel().selectedRows())


# -- several entries selected -----------------------------------------------------------------------
def test_a_grid_of_selected_entries_stays_open_while_images_finish(qtbot, window, pipe):
    add_entries(window, [{}, {}, {}])
    start_generating(qtbot, window, pipe, count=2)
    click_history_row(qtbot, window, 0)  # while it runs, the person picks two to look at
    ctrl_click_history_row(qtbot, window, 2)
    qtbot.waitUntil(lambda: window.imagePanel.batchGrid.isVisible())

    wait_ready(qtbot, window)  # two images listed at the top: the selected rows move down
    qtbot.wait(10)  # any deferred page change has run
    assert window.imagePanel.batchGrid.isVisible()
    assert selected_rows(window) == [2, 4]
    assert [item.caption for item in window.imagePanel.batchGrid.items()] == ["seed 1002", "seed 1000"]

    click_history_row(qtbot, window, 0)  # one entry: the image alone; the batch's grid a click away
    qtbot.wait(10)
    assert window.previewView.isVisible() and window.imagePanel.gridButton.isVisible()
    qtbot.mouseClick(window.imagePanel.gridButton, Qt.MouseButton.LeftButton)
    assert window.imagePanel.batchGrid.isVisible() and len(window.imagePanel.batchGrid.items()) == 2
    assert "seed 1002" not in [item.caption for item in window.imagePanel.batchGrid.items()]


def test_a_comparison_stays_open_while_an_image_finishes(qtbot, window, pipe):
    add_entries(window, [{}, {}])
    start_generating(qtbot, window, pipe)
    click_history_row(qtbot, window, 0)
    ctrl_click_history_row(qtbot, window, 1)
    qtbot.mouseClick(window.imagePanel.compareButton, Qt.MouseButton.LeftButton)
    compare = window.imagePanel.compareView
    assert compare.isVisible()

    wait_ready(qtbot, window)
    qtbot.wait(10)
    assert compare.isVisible() and window.compareAction.isChecked()
    assert selected_rows(window) == [1, 2]
    assert colour_shown(compare.leftView) == seed_colour(1001)


def test_a_search_keeps_the_selected_entries_it_still_lists(qtbot, window):
    add_entries(window, [dict(prompt="red barn"), dict(prompt="blue sea"), dict(prompt="red kite")])
    click_history_row(qtbot, window, 0)  # red kite
    ctrl_click_history_row(qtbot, window, 2)  # red barn
    qtbot.keyClicks(window.historySearch, "red")
    assert window.historyModel.rowCount() == 2 and selected_rows(window) == [0, 1]
    assert window.imagePanel.batchGrid.isVisible()


def test_with_several_selected_delete_asks_once_and_moves_them_all_to_the_trash(qtbot, window, trash):
    entries = add_entries(window, [dict(prompt="keep me"), dict(prompt="old one"), dict(prompt="older one"),
                                   dict(prompt="newest")])
    click_history_row(qtbot, window, 1)  # "older one"
    ctrl_click_history_row(qtbot, window, 2)  # "old one"
    ctrl_click_history_row(qtbot, window, 0)  # "newest"
    assert window.deleteButton.text() == "Delete 3…" and window.deleteAction.text() == "Delete 3 Entries…"
    in_context_menu = [a.text() for a in window.historyList.actions() if a.text().startswith("Delete")]
    assert in_context_menu == ["Delete 3 Entries…"]

    asked = answer_box_recording(qtbot, "confirmDeleteButton")
    qtbot.mouseClick(window.deleteButton, Qt.MouseButton.LeftButton)
    assert asked == ["Delete 3 images from the history?"]
    assert [e.prompt for e in window.historyModel.entries()] == ["keep me"]
    assert len(window.history) == 1 and entries[0].image_path.is_file()
    for entry in entries[1:]:
        assert not entry.image_path.exists() and (trash / entry.image_path.name).is_file()
    assert window.deleteButton.text() == "Delete…"


def test_with_several_selected_restoring_is_off_and_copy_prompt_copies_them_all(qtbot, window):
    add_entries(window, [dict(prompt="a barn", seed=5), dict(prompt="a kite", seed=6)])
    type_prompt(qtbot, window, "my words")
    click_history_row(qtbot, window, 0)
    panel = window.historyPanel
    assert panel.useSettingsButton.isEnabled() and window.rerunAction.isEnabled()
    ctrl_click_history_row(qtbot, window, 1)
    for widget in (panel.useSettingsButton, panel.usePromptButton, panel.useSeedButton, panel.rerunButton,
                   window.useSettingsAction, window.usePromptAction, window.useSeedAction, window.rerunAction,
                   window.useEntryAsInputAction):
        assert not widget.isEnabled()
    assert "single image" in panel.useSettingsButton.toolTip()

    window.historyList.setFocus()
    qtbot.keyClick(window.historyList, Qt.Key.Key_Return)  # Enter is Use Settings: not with two selected
    assert window.promptEdit.toPlainText() == "my words" and window.randomSeedCheck.isChecked()
    assert window.queue.pending == [] and window.queue.running is None

    assert panel.copyPromptButton.text() == "Copy 2 Prompts"
    qtbot.mouseClick(panel.copyPromptButton, Qt.MouseButton.LeftButton)
    assert QApplication.clipboard().text() == "a kite\na barn"


# -- progress between a batch's chunks ---------------------------------------------------------------
def test_after_a_chunk_is_decoded_the_next_one_says_it_is_starting(qtbot, window, pipe):
    pipe.max_batch = 2  # four images: two chunks of two
    said: list[str] = []
    window.queue.finished.connect(lambda result: said.append(window.progressLabel.text()))
    set_spin(qtbot, window.countSpin, 4)
    type_prompt(qtbot, window, "four in two chunks")
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(said) == 4, timeout=TIMEOUT)
    wait_ready(qtbot, window)
    # After the first chunk's images are in, the label is about the next chunk, not a decode.
    assert said[1].startswith("Image 3 of 4 · starting…"), said
    assert "decoding" not in said[1]
    assert said[3].startswith("Done in")


# -- looking through the history while a run goes on ----------------------------------------------------
def test_arrows_and_quick_look_during_a_run_only_show_and_esc_closes_quick_look_only(qtbot, window, pipe,
                                                                                     monkeypatch):
    import app.worker as worker_module

    loads: list = []
    real_load = worker_module.load_pipeline
    monkeypatch.setattr(worker_module, "load_pipeline", lambda *a: loads.append(a) or real_load(*a))
    add_entries(window, [dict(prompt="old one", steps=3, width=96), dict(prompt="older one", seed=77, steps=2)])
    start_generating(qtbot, window, pipe, prompt="my words", count=3)
    view = window.previewView
    click_history_row(qtbot, window, 0)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.rect().center())
    qtbot.keyClick(view, Qt.Key.Key_Down)  # the image view has the keys: next entry
    assert window.shown.params.seed == 1000
    qtbot.keyClick(view, Qt.Key.Key_Space)
    look = window.viewer.quick_look
    qtbot.waitUntil(lambda: QApplication.activeWindow() is look)
    qtbot.keyClick(look.view, Qt.Key.Key_Up)  # back, in Quick Look
    qtbot.waitUntil(lambda: "seed 77" in look.caption.text())
    # Only shown: the controls are the person's and no model was loaded.
    assert window.promptEdit.toPlainText() == "my words" and window.randomSeedCheck.isChecked()
    assert window.stepsSlider.value() == 4 and window.widthSpin.value() == 64
    assert loads == [] and window.queue.loading is None

    qtbot.keyClick(look.view, Qt.Key.Key_Escape)  # closes Quick Look; the run goes on
    assert not look.isVisible()
    assert window.queue.running is not None and not window.queue.is_cancelling(window.queue.running)
    assert len(window.queue.running_jobs) + len(window.queue.pending) == 3
    wait_ready(qtbot, window)
    assert len(window.history) == 5


# -- shortcuts ---------------------------------------------------------------------------------------
def test_no_two_actions_or_keys_of_the_window_share_a_shortcut(qtbot, window):
    """Every action (File, Edit, Image, View, Window, Models, Preferences, the context menus) and
    every widget key (Space, Enter, Delete on the history): a key shared by two of them in
    overlapping places is ambiguous, and Qt then runs neither."""
    from PySide6.QtGui import QAction, QShortcut

    owners: dict[str, list[tuple[object, str, set]]] = {}
    for action in window.findChildren(QAction):
        places = {id(o) for o in action.associatedObjects()}
        for sequence in action.shortcuts():
            owners.setdefault(sequence.toString(), []).append((action, action.shortcutContext().name, places))
    for shortcut in window.findChildren(QShortcut):
        owners.setdefault(shortcut.key().toString(), []).append(
            (shortcut, shortcut.context().name, {id(shortcut.parent())}))
    for key, users in owners.items():
        if len(users) < 2 or not key:
            continue
        window_wide = [u for u in users if u[1] in ("WindowShortcut", "ApplicationShortcut")]
        assert not window_wide, f"{key} is taken by {[getattr(u[0], 'text', lambda: 'a key')() for u in users]}"
        for i, (_, _, a) in enumerate(users):  # widget keys: never two on the same widget
            for _, _, b in users[i + 1:]:
                assert not a & b, f"{key} is taken twice on one widget"

    # The keys a person relies on, each with one meaning.
    assert [u[0].objectName() for u in owners["Esc"]] == ["cancelAction"]
    assert [u[0].objectName() for u in owners["Space"]] == ["quickLookKey"]
    # Quit, Preferences, Models, Find and the View toggles have keys (Ctrl+Q where the platform names none).
    for name in ("quitAction", "preferencesAction", "modelManagerAction", "findAction", "toggleControlsAction",
                 "toggleHistoryAction", "zoomFitAction", "fullScreenAction", "minimizeAction"):
        keys = [sequence.toString() for sequence in getattr(window, name).shortcuts()]
        assert any(keys), f"{name} has no shortcut"


# -- the history at its narrowest ---------------------------------------------------------------------
def test_at_the_narrowest_history_a_row_keeps_its_seed_and_age_whole(qtbot, window):
    import time as clock

    from PIL import Image

    from app.imaging import thumbnail_png
    from app.params import SEED_MAX, GenerationParams, ModelChoice
    from mlx_flux.metadata import save_png
    from mlx_flux.request import GenerationRequest
    from test_app_history_restore import painted_row

    request = GenerationRequest("a lighthouse on a cliff at dusk, stormy sea " * 3, 1024, 768, steps=28,
                                seed=SEED_MAX, model="fake-schnell")
    picture = Image.new("RGB", (64, 48), (20, 90, 160))
    path = window.data_dir.images / "made" / "one.png"
    path.parent.mkdir(parents=True)
    save_png(picture, path, request.to_metadata())
    window.history.add(GenerationParams(ModelChoice(window.controls.current_model()), request), path,
                       variant="schnell", created_at=clock.time() - 59 * 60 - 5, thumbnail=thumbnail_png(picture))
    window.refresh_history()

    hint = window.minimumSizeHint()
    assert hint.width() <= 800
    window.resize(hint)
    qtbot.waitUntil(lambda: window.width() == hint.width())
    window.splitter.setSizes([0, 10_000, 0])  # everything to the image: the panels at their minimum
    assert window.historyPanel.width() == window.historyPanel.minimumWidth()

    texts, _ = painted_row(window, 0)
    assert f"seed {SEED_MAX}" in texts and "59 min ago" in texts, texts


def drag_handle(qtbot, window, index: int, dx: int) -> None:
    """Drag the splitter handle before widget `index` by `dx` pixels, as with the mouse."""
    handle = window.splitter.handle(index)
    start = handle.rect().center()
    qtbot.mousePress(handle, Qt.MouseButton.LeftButton, pos=start)
    for step in range(1, 11):
        qtbot.mouseMove(handle, start + QPoint(dx * step // 10, 0))
    qtbot.mouseRelease(handle, Qt.MouseButton.LeftButton, pos=start + QPoint(dx, 0))


def test_dragging_a_side_panel_to_nothing_hides_it_as_the_view_menu_does(qtbot, window):
    history = window.historyPanel
    assert window.toggleHistoryAction.text() == "Hide History"
    drag_handle(qtbot, window, 2, history.width() + 50)  # the history's edge, to the window's right
    qtbot.waitUntil(lambda: history.isHidden())
    assert window.toggleHistoryAction.text() == "Show History"
    assert not window.settings.panel_visible("history")
    window.toggleHistoryAction.trigger()  # View > Show History brings it back, at a usable width
    assert history.isVisible() and history.width() >= history.minimumWidth()

    controls = window.controls
    drag_handle(qtbot, window, 1, -(controls.width() + 50))
    qtbot.waitUntil(lambda: controls.isHidden())
    assert window.toggleControlsAction.text() == "Show Controls"
    drag_handle(qtbot, window, 2, -2000)  # the image never collapses
    assert window.imagePanel.width() > 0


# -- the first run ------------------------------------------------------------------------------------
def test_on_a_first_run_the_status_says_the_model_is_not_downloaded(qtbot, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from test_app_support import open_window

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # a new user's empty cache
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    _, window = open_window(qtbot, tmp_path / "data")
    # Generate would open the model manager, not load: the status must not promise a load.
    assert window.modelStatusLabel.text() == "FLUX.1-schnell · not downloaded"
    assert "Models" in window.modelStatusLabel.toolTip()
    window.close()


def test_generate_from_a_comparison_shows_the_run_not_the_pair(qtbot, window):
    import threading

    add_entries(window, [{}, {}])
    click_history_row(qtbot, window, 0)
    ctrl_click_history_row(qtbot, window, 1)
    qtbot.mouseClick(window.imagePanel.compareButton, Qt.MouseButton.LeftButton)
    assert window.imagePanel.compareView.isVisible()
    begin = threading.Event()  # the run waits (on the worker thread) before its first step: "Starting…"
    window.queue.worker.jobStarted.connect(lambda *a: begin.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    type_prompt(qtbot, window, "a new one")
    with qtbot.waitSignal(window.queue.jobStarted, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    try:
        assert window.imageInfoLabel.text().startswith("Generating")
        assert window.previewView.isVisible() and not window.imagePanel.compareView.isVisible()
    finally:
        begin.set()
    wait_ready(qtbot, window)


@pytest.mark.parametrize("answer", ["keepFileButton", "deletePermanentlyButton"])
def test_without_a_trash_deleting_several_asks_once(qtbot, window, monkeypatch, answer):
    import app.historycontroller as controller

    monkeypatch.setattr(controller, "move_to_trash", lambda path: False)
    entries = add_entries(window, [dict(prompt="one"), dict(prompt="two"), dict(prompt="three")])
    click_history_row(qtbot, window, 0)
    ctrl_click_history_row(qtbot, window, 1)
    ctrl_click_history_row(qtbot, window, 2)
    answers = BoxAnswers(qtbot, ["confirmDeleteButton", answer])
    qtbot.mouseClick(window.deleteButton, Qt.MouseButton.LeftButton)
    answers.stop()
    # One question for the three files, not one per file.
    assert answers.asked == ["Delete 3 images from the history?", "3 image files cannot be moved to the Trash."]
    assert len(window.history) == 0 and window.historyModel.rowCount() == 0
    assert all(entry.image_path.exists() == (answer == "keepFileButton") for entry in entries)


# -- a real display ---------------------------------------------------------------------------------
def test_a_badge_on_linux_prints_no_qt_warning(tmp_path):
    """An image finished in the background badges the app's icon; on a Linux display Qt only
    complains on the terminal unless the app names its .desktop file (seen under Xvfb)."""
    import os
    import shutil
    import subprocess
    import sys

    if shutil.which("xvfb-run") is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux and xvfb-run")
    script = ("import sys\n"
              "from app.main import create_app\n"
              "from app.notify import set_badge\n"
              "app, window = create_app(['mlx-flux-app', '--data-dir', sys.argv[1]])\n"
              "window.show()\nset_badge(2)\nset_badge(0)\nwindow.close()\nprint('badged')\n")
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               XDG_DATA_HOME=str(tmp_path / "xdg"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = subprocess.run(["xvfb-run", "-a", sys.executable, "-c", script, str(tmp_path / "data")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert "badged" in done.stdout, done.stderr
    assert "badge" not in done.stderr.lower(), done.stderr
