"""The main window driven like a person would: typing, clicking, keyboard shortcuts, drag and drop,
on the real engine with a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

import app.window as window_module
import app.worker as worker_module
from test_app_support import (
    TIMEOUT, answer_box, caching_loader, open_window, ready_window, set_spin, type_prompt, wait_ready,
)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # the Trash of deleted images
    loads: list = []
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader(loads))
    return loads


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def window(qtbot, data_dir, tiny_schnell):
    w = ready_window(qtbot, data_dir, tiny_schnell)
    yield w
    w.close()


def generate(qtbot, window, prompt: str | None = None):
    """Type the prompt, click Generate, wait for the finished image; returns the JobResult."""
    if prompt is not None:
        type_prompt(qtbot, window, prompt)
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    return blocker.args[0]


def seed_history(window, prompts: list[str]):
    """History entries with real PNG files, written the way the app writes them, oldest first.

    Cheaper than generating when a test is about the history rather than generation.
    """
    from PIL import Image

    from app.imaging import thumbnail_png
    from app.params import GenerationParams, ModelChoice
    from mlx_flux.metadata import save_png
    from mlx_flux.request import GenerationRequest

    entries = []
    for i, prompt in enumerate(prompts):
        request = GenerationRequest(prompt, 64, 64, steps=4, guidance=None, seed=1000 + i, model="schnell")
        params = GenerationParams(ModelChoice(window.controls.current_model()), request)
        image = Image.new("RGB", (64, 64), (40 * i % 256, 120, 200))
        path = window.data_dir.images / "seeded" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png(image, path, request.to_metadata())
        entries.append(window.history.add(params, path, variant="schnell", created_at=1_700_000_000.0 + i,
                                          thumbnail=thumbnail_png(image)))
    window.refresh_history()
    return entries


def click_history_row(qtbot, window, row: int) -> None:
    view = window.historyList
    rect = view.visualRect(window.historyModel.index(row))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def use_settings_of_row(qtbot, window, row: int) -> None:
    """Pick a history entry (which only shows it) and click Use Settings."""
    click_history_row(qtbot, window, row)
    qtbot.mouseClick(window.historyPanel.useSettingsButton, Qt.MouseButton.LeftButton)


def answer_next_dialog(qtbot, button_name: str | None, standard: QMessageBox.StandardButton | None = None):
    """Click a button of the next modal message box as soon as it is shown."""

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        button = box.findChild(QPushButton, button_name) if button_name else box.button(standard)
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, click)


def drop_file(window, path: Path) -> bool:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = window.previewView.mapTo(window, QPoint(20, 20))
    enter = QDragEnterEvent(QPointF(pos), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPointF(pos), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)
    return True


# -- names and startup -----------------------------------------------------------------------
NAMES = ["promptEdit", "generateButton", "cancelButton", "stepsSlider", "guidanceSlider", "seedSpin", "widthSpin",
         "heightSpin", "modelCombo", "previewView", "progressBar", "historyList", "historySearch", "exportButton"]


def test_widgets_carry_the_automation_names(window):
    from PySide6.QtWidgets import QWidget

    for name in NAMES:
        widget = window.findChild(QWidget, name)
        assert widget is not None, name
        assert widget.accessibleName() == name


def test_python_m_app_help():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0
    assert "--model" in done.stdout and "--data-dir" in done.stdout


def test_escape_cancels(qtbot, window):
    import threading

    gate = threading.Event()
    window.queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    type_prompt(qtbot, window, "escape hatch")
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.keyClick(window.promptEdit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window.promptEdit, Qt.Key.Key_Escape)  # typing: Esc is the prompt's, not Cancel
    assert not window.queue.is_cancelling(window.queue.running)
    with qtbot.waitSignal(window.queue.cancelled, timeout=TIMEOUT):
        qtbot.keyClick(window.historyList, Qt.Key.Key_Escape)
        gate.set()
    wait_ready(qtbot, window)
    assert window.historyModel.rowCount() == 0


def test_create_app_reuses_the_running_application(qtbot, tmp_path, tiny_schnell):
    app1, w1 = open_window(qtbot, tmp_path / "a", tiny_schnell)
    app2, w2 = open_window(qtbot, tmp_path / "b")
    assert app1 is app2 is QApplication.instance()
    assert w1 is not w2
    assert QApplication.applicationName() == "mlx-flux"
    for w in (w1, w2):
        wait_ready(qtbot, w)
        w.close()


def test_variant_defaults_schnell(window):
    assert window.stepsSlider.value() == 4
    assert not window.guidanceSlider.isEnabled()
    assert window.model_info.variant == "schnell"
    assert "ready" in window.modelStatusLabel.text()


# -- generating ------------------------------------------------------------------------------
def test_generate_shows_previews_saves_png_and_grows_history(qtbot, window, data_dir):
    from mlx_flux.metadata import read_metadata

    previews, steps = [], []
    window.queue.preview.connect(previews.append)
    window.queue.progress.connect(lambda s, t, e: steps.append((s, t)))
    result = generate(qtbot, window, "a lighthouse at dusk")

    assert len(previews) == 4 and steps[-1] == (4, 4)
    assert window.historyModel.rowCount() == 1
    entry = window.historyModel.entry(0)
    assert entry.prompt == "a lighthouse at dusk" and entry.params.steps == 4 and entry.seed == result.params.seed
    assert entry.params.choice.source == str(Path(window.controls.current_model()))
    assert window.history.thumbnail(entry.id).startswith(b"\x89PNG") and entry.image_path.is_file()
    assert entry.image_path.is_relative_to(data_dir / "images")
    meta = read_metadata(entry.image_path)
    assert meta["prompt"] == "a lighthouse at dusk" and meta["seed"] == entry.seed and meta["width"] == 64
    # What a person sees: the image, its seed, the done state, random seed still random.
    assert not window.previewView.image().isNull() and not window.previewView.is_preview()
    assert f"seed {entry.seed}" in window.imageInfoLabel.text()
    assert window.progressLabel.text().startswith("Done")
    assert window.seedSpin.value() == entry.seed and window.randomSeedCheck.isChecked()
    assert window.exportButton.isEnabled() and window.cancelButton.isEnabled() is False


def test_ctrl_enter_generates_and_the_model_stays_warm(qtbot, window, isolated):
    loads_before = len(isolated)
    type_prompt(qtbot, window, "keyboard only")
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT):
        qtbot.keyClick(window.promptEdit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    wait_ready(qtbot, window)
    assert window.historyModel.rowCount() == 1  # exactly one image, not one per handler
    assert window.promptEdit.toPlainText() == "keyboard only"  # no newline typed
    generate(qtbot, window, "and again")
    assert len(isolated) == loads_before  # no reload between runs


def test_empty_prompt_asks_for_one(qtbot, window):
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert "prompt" in window.messageLabel.text().lower()
    assert not window.queue.is_busy()


def test_cancel_stops_within_a_step_and_the_next_run_works(qtbot, window):
    import threading

    gate = threading.Event()
    # On the worker thread: hold step 1 until the person has clicked Cancel.
    window.queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    set_spin(qtbot, window.countSpin, 2)
    type_prompt(qtbot, window, "to be cancelled")
    steps = []
    window.queue.progress.connect(lambda s, t, e: steps.append(s))
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):  # step 1 is under way
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert window.cancelButton.isEnabled()
    assert window.progressLabel.text().startswith("Images 1–2 of 2 · step 1/4 · ")  # made together
    assert window.previewView.is_preview() and window.imageInfoLabel.text().startswith("Generating")
    assert not window.exportButton.isEnabled()  # acts on finished images only
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        qtbot.mouseClick(window.cancelButton, Qt.MouseButton.LeftButton)
        answer_box(qtbot, window, "confirmCancelBox", "cancelAllButton")  # two images: asked first
        gate.set()
    assert steps == [1]  # stopped right after the step it was in
    assert window.historyModel.rowCount() == 0
    assert window.progressLabel.text() in ("Cancelled", "Ready")
    assert not window.cancelButton.isEnabled() and not window.queueList.isVisible()

    set_spin(qtbot, window.countSpin, 1)
    generate(qtbot, window, "after cancel")
    assert window.historyModel.rowCount() == 1


def test_queue_of_four_seeds_is_shown_and_one_can_be_removed(qtbot, window):
    import threading

    gate = threading.Event()
    window.queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    set_spin(qtbot, window.seedSpin, 100)  # typing a seed locks it
    assert not window.randomSeedCheck.isChecked()
    set_spin(qtbot, window.countSpin, 4)
    type_prompt(qtbot, window, "four foxes")
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.queueList.count() == 4, timeout=TIMEOUT)
    assert window.queueList.isVisible()
    assert "seed 100" in window.queueList.item(0).text() and "seed 103" in window.queueList.item(3).text()
    assert window.generateButton.text() == "Add to Queue"

    # Select the second queued image and press Delete to drop it.
    item = window.queueList.item(2)
    qtbot.mouseClick(window.queueList.viewport(), Qt.MouseButton.LeftButton,
                     pos=window.queueList.visualItemRect(item).center())
    qtbot.keyClick(window.queueList, Qt.Key.Key_Delete)
    assert window.queueList.count() == 3
    gate.set()
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 3 and not window.queue.is_busy(), timeout=TIMEOUT)
    assert sorted(e.seed for e in window.historyModel.entries()) == [100, 101, 103]
    assert [e.seed for e in window.historyModel.entries()] == [103, 101, 100]  # newest first


def test_changing_model_reloads_with_progress_and_variant_ranges(qtbot, window, tiny_dev, tiny_schnell, monkeypatch):
    loading = []
    window.queue.loadProgress.connect(lambda msg, frac: loading.append(msg))
    monkeypatch.setattr(window_module.QFileDialog, "getExistingDirectory", lambda *a, **k: str(tiny_dev))
    with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
        window.openFolderAction.trigger()  # what File > Open Model Folder… does
    assert loading, "load progress was shown"
    assert window.model_info.variant == "dev"
    assert window.stepsSlider.value() == 28 and window.stepsSlider.maximum() >= 50
    assert window.guidanceSlider.isEnabled() and window.controls.guidanceValueSpin.text() == "3.5"

    # Dev with guidance: lower steps for speed, generate, the guidance is recorded.
    window.stepsSlider.setFocus()
    for _ in range(26):
        qtbot.keyClick(window.stepsSlider, Qt.Key.Key_Left)
    assert window.stepsSlider.value() == 2
    result = generate(qtbot, window, "dev image")
    assert result.params.guidance == pytest.approx(3.5) and result.model.variant == "dev"

    # Back to schnell with the keyboard in the model picker.
    combo = window.modelCombo
    combo.setFocus()
    target = window.controls.model_index(str(tiny_schnell))
    key = Qt.Key.Key_Up if target < combo.currentIndex() else Qt.Key.Key_Down
    with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
        while combo.currentIndex() != target:
            qtbot.keyClick(combo, key)
    assert window.model_info.variant == "schnell"
    assert window.stepsSlider.value() == 4 and not window.guidanceSlider.isEnabled()


# -- history ---------------------------------------------------------------------------------
def test_restart_with_the_same_data_dir_finds_history_and_settings(qtbot, window, data_dir, tiny_schnell):
    result = generate(qtbot, window, "remember me")
    set_spin(qtbot, window.widthSpin, 96)
    window.resize(760, 640)
    size = window.size()  # what the window manager granted
    window.close()

    _, again = open_window(qtbot, data_dir)  # no --model: the last one is remembered
    wait_ready(qtbot, again)
    assert again.controls.current_model() == str(tiny_schnell)
    assert again.model_info is not None and again.model_info.choice.source == str(tiny_schnell)
    assert again.widthSpin.value() == 96 and again.heightSpin.value() == 64
    assert again.size() == size
    assert again.historyModel.rowCount() == 1
    assert again.historyModel.entry(0).prompt == "remember me"
    assert again.historyModel.entry(0).seed == result.params.seed
    again.close()


def test_search_select_restore_rerun_and_copy_prompt(qtbot, window):
    fox, whale = seed_history(window, ["a red fox in the snow", "a blue whale"])
    assert [e.prompt for e in window.historyModel.entries()] == ["a blue whale", "a red fox in the snow"]

    qtbot.keyClicks(window.historySearch, "fox")
    assert [e.prompt for e in window.historyModel.entries()] == ["a red fox in the snow"]
    assert "1 of 2" in window.historyCountLabel.text()

    # Selecting the entry shows its image; Use Settings restores all its settings (seed locked).
    type_prompt(qtbot, window, "something else")
    set_spin(qtbot, window.widthSpin, 128)
    window.stepsSlider.setValue(2)
    click_history_row(qtbot, window, 0)
    assert window.shown.entry_id == fox.id and window.promptEdit.toPlainText() == "something else"
    qtbot.mouseClick(window.historyPanel.useSettingsButton, Qt.MouseButton.LeftButton)
    assert window.promptEdit.toPlainText() == "a red fox in the snow"
    assert (window.widthSpin.value(), window.heightSpin.value()) == (64, 64)
    assert window.stepsSlider.value() == 4
    assert window.seedSpin.value() == fox.seed and not window.randomSeedCheck.isChecked()
    assert window.previewView.image().size().width() == 64
    assert window.shown.entry_id == fox.id and f"seed {fox.seed}" in window.imageInfoLabel.text()

    qtbot.mouseClick(window.copyPromptButton, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "a red fox in the snow"

    # Re-run: the same prompt, settings and seed, as a new entry.
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(window.rerunButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert blocker.args[0].params.seed == fox.seed and blocker.args[0].params.prompt == fox.prompt
    assert blocker.args[0].image == window.previewView.image()
    window.historySearch.clear()
    assert window.historyModel.rowCount() == 3
    assert window.historyModel.entry(0).seed == fox.seed  # newest first


def answer_dialogs(qtbot, names: list[str]) -> None:
    """Click the named button of each of the next modal message boxes, one after the other."""
    clicked: list = []

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox) or (clicked and box is clicked[-1]):
            QTimer.singleShot(20, click)
            return
        clicked.append(box)
        qtbot.mouseClick(box.findChild(QPushButton, names[len(clicked) - 1]), Qt.MouseButton.LeftButton)
        if len(clicked) < len(names):
            QTimer.singleShot(20, click)

    QTimer.singleShot(0, click)


@pytest.fixture
def trash(monkeypatch, tmp_path):
    """A stand-in Trash: moves files into a folder (the test machine may have no usable Trash)."""
    import app.historycontroller as controller

    folder = tmp_path / "Trash"
    folder.mkdir()

    def move(path):
        Path(path).rename(folder / Path(path).name)
        return True

    monkeypatch.setattr(controller, "move_to_trash", move)
    return folder


def test_delete_asks_and_removes_only_that_entry(qtbot, window, trash):
    seed_history(window, ["first", "second", "third"])
    entries = window.historyModel.entries()
    click_history_row(qtbot, window, 1)  # "second"

    answer_next_dialog(qtbot, None, QMessageBox.StandardButton.Cancel)
    qtbot.mouseClick(window.deleteButton, Qt.MouseButton.LeftButton)
    assert window.historyModel.rowCount() == 3  # cancelled: nothing happened

    answer_next_dialog(qtbot, "confirmDeleteButton")
    qtbot.mouseClick(window.deleteButton, Qt.MouseButton.LeftButton)
    remaining = window.historyModel.entries()
    assert [e.prompt for e in remaining] == ["third", "first"]
    assert not entries[1].image_path.exists() and (trash / entries[1].image_path.name).is_file()  # recoverable
    for entry in remaining:
        assert entry.image_path.is_file() and window.history.get(entry.id) == entry
    assert len(window.history) == 2


@pytest.mark.parametrize("answer", ["keepFileButton", "deletePermanentlyButton"])
def test_without_a_trash_delete_asks_before_deleting_for_good(qtbot, window, monkeypatch, answer):
    import app.historycontroller as controller

    monkeypatch.setattr(controller, "move_to_trash", lambda path: False)
    seed_history(window, ["only"])
    entry = window.historyModel.entry(0)
    click_history_row(qtbot, window, 0)
    answer_dialogs(qtbot, ["confirmDeleteButton", answer])
    qtbot.mouseClick(window.deleteButton, Qt.MouseButton.LeftButton)
    assert len(window.history) == 0
    assert entry.image_path.exists() == (answer == "keepFileButton")
    if answer == "keepFileButton":
        assert "was kept" in window.messageBar.text()


def test_delete_never_touches_a_file_outside_the_data_folder(qtbot, window, tmp_path, trash):
    import sqlite3

    victim = tmp_path / "victim" / "secret.png"
    victim.parent.mkdir()
    victim.write_bytes(b"precious")
    seed_history(window, ["outside"])
    entry = window.historyModel.entry(0)
    db = sqlite3.connect(window.history.path)
    db.execute("UPDATE entries SET image_path = ? WHERE id = ?", (str(victim), entry.id))
    db.commit()
    db.close()
    window.refresh_history()
    click_history_row(qtbot, window, 0)
    answer_dialogs(qtbot, ["confirmDeleteButton"])
    qtbot.mouseClick(window.deleteButton, Qt.MouseButton.LeftButton)
    assert len(window.history) == 0 and victim.read_bytes() == b"precious"
    assert not any(trash.iterdir()) and "outside the data folder" in window.messageBar.text()


# -- export, clipboard, drag, file manager ---------------------------------------------------
def test_export_in_each_format(qtbot, window, tmp_path, monkeypatch):
    from PIL import Image

    from mlx_flux.metadata import read_metadata

    generate(qtbot, window, "export me")
    out = tmp_path / "exports"
    png = window.export_to(out / "copy.png")
    assert read_metadata(png)["prompt"] == "export me"
    assert png.read_bytes() == window.shown.path.read_bytes()  # exactly the saved image
    jpg = window.export_to(out / "copy", "jpeg")
    webp = window.export_to(out / "copy.webp")
    assert jpg.suffix == ".jpg"
    for path, fmt in ((jpg, "JPEG"), (webp, "WEBP")):
        with Image.open(path) as im:
            assert im.format == fmt and im.size == (64, 64)
            comment = im.getexif().get_ifd(0x8769).get(0x9286)
            assert comment and "export me" in comment.decode("utf-16-be", "ignore")
        # and read back by `mlx-flux info` and the app's restore, as the PNG is
        meta = read_metadata(path)
        assert meta["prompt"] == "export me" and meta["seed"] == window.shown.params.seed

    # The button asks where, through the platform's save dialog.
    asked = []

    def fake_dialog(parent, title, start, filters):
        asked.append((title, filters))
        return str(out / "from-dialog.webp"), "WebP image (*.webp)"

    monkeypatch.setattr(window_module.QFileDialog, "getSaveFileName", fake_dialog)
    qtbot.mouseClick(window.exportButton, Qt.MouseButton.LeftButton)
    assert asked and "JPEG" in asked[0][1]
    assert (out / "from-dialog.webp").is_file()


def test_copy_drag_and_show_in_file_manager(qtbot, window, monkeypatch):
    generate(qtbot, window, "clipboard")
    qtbot.mouseClick(window.copyImageButton, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().image().size().width() == 64
    mime = window.image_mime()  # what dragging the image out carries
    assert mime.hasImage() and Path(mime.urls()[0].toLocalFile()) == window.shown.path

    revealed = []
    monkeypatch.setattr(window_module, "reveal_in_file_manager", revealed.append)
    qtbot.mouseClick(window.revealButton, Qt.MouseButton.LeftButton)
    assert revealed == [window.shown.path]


def test_reuse_seed_of_this_image(qtbot, window):
    result = generate(qtbot, window, "seedy")
    assert window.randomSeedCheck.isChecked()
    set_spin(qtbot, window.seedSpin, 5)
    qtbot.mouseClick(window.reuseSeedButton, Qt.MouseButton.LeftButton)
    assert window.seedSpin.value() == result.params.seed and not window.randomSeedCheck.isChecked()


def test_dropping_an_image_made_by_mlx_flux_restores_its_settings(qtbot, window, tmp_path, tiny_schnell):
    from PIL import Image

    from mlx_flux.metadata import save_png

    made = tmp_path / "made-by-cli.png"
    save_png(Image.new("RGB", (96, 64), "orange"), made,
             dict(prompt="a dropped prompt", seed=321, steps=3, guidance=None, width=96, height=64,
                  model="schnell", version="0.1.0"))
    assert drop_file(window, made)
    assert window.promptEdit.toPlainText() == "a dropped prompt"
    assert (window.widthSpin.value(), window.heightSpin.value()) == (96, 64)
    assert window.stepsSlider.value() == 3
    assert window.seedSpin.value() == 321 and not window.randomSeedCheck.isChecked()
    assert window.controls.current_model() == str(tiny_schnell)  # the model stays usable
    assert window.previewView.image().width() == 96

    foreign = tmp_path / "holiday.png"
    Image.new("RGB", (8, 8)).save(foreign)
    assert drop_file(window, foreign)
    assert "no mlx-flux settings" in window.messageLabel.text()
    assert window.promptEdit.toPlainText() == "a dropped prompt"  # untouched

    text = tmp_path / "notes.txt"
    text.write_text("hi")
    assert not drop_file(window, text)  # not offered as a drop target at all


def test_size_presets_and_steps_of_16(qtbot, window):
    set_spin(qtbot, window.widthSpin, 1024)
    set_spin(qtbot, window.heightSpin, 1024)
    combo = window.aspectCombo
    index = combo.findText("Wide 16:9")
    combo.setFocus()
    while combo.currentIndex() != index:
        qtbot.keyClick(combo, Qt.Key.Key_Down)
    w, h = window.widthSpin.value(), window.heightSpin.value()
    assert w % 16 == 0 and h % 16 == 0 and abs(w / h - 16 / 9) < 0.05
    window.widthSpin.setFocus()
    window.widthSpin.selectAll()
    qtbot.keyClicks(window.widthSpin, "1000")
    qtbot.keyClick(window.widthSpin, Qt.Key.Key_Tab)
    assert window.widthSpin.value() == 992 or window.widthSpin.value() == 1008
    qtbot.keyClick(window.heightSpin, Qt.Key.Key_Up)
    assert window.heightSpin.value() == h + 16


def choose_in_combo(qtbot, combo, index: int) -> None:
    """Move a combo box to `index` with the arrow keys (emits `activated`, like a person)."""
    combo.setFocus()
    key = Qt.Key.Key_Up if index < combo.currentIndex() else Qt.Key.Key_Down
    while combo.currentIndex() != index:
        qtbot.keyClick(combo, key)


def test_quantization_reloads_and_entries_restore_their_precision(qtbot, window):
    with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
        choose_in_combo(qtbot, window.quantizeCombo, window.quantizeCombo.findData(8))
    assert window.model_info.choice.quantize == 8 and "8-bit" in window.modelStatusLabel.text()
    window.stepsSlider.setValue(3)
    result = generate(qtbot, window, "quantized")
    assert result.params.quantize == 8 and window.historyModel.entry(0).params.quantize == 8

    with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
        choose_in_combo(qtbot, window.quantizeCombo, 0)  # "Full precision"
    assert window.model_info.choice.quantize is None
    window.stepsSlider.setValue(4)

    # Use Settings of the 8-bit entry brings its precision back (a reload, once agreed) and keeps its steps.
    click_history_row(qtbot, window, 0)
    answer_next_dialog(qtbot, "switchModelButton")
    with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
        qtbot.mouseClick(window.historyPanel.useSettingsButton, Qt.MouseButton.LeftButton)
    assert window.controls.quantize() == 8 and window.model_info.choice.quantize == 8
    assert window.stepsSlider.value() == 3


def test_open_with_restores_settings(qtbot, window, tmp_path):
    """Finder's "Open With" arrives as a QFileOpenEvent on the application."""
    from PIL import Image
    from PySide6.QtGui import QFileOpenEvent

    from mlx_flux.metadata import save_png

    made = tmp_path / "opened.png"
    save_png(Image.new("RGB", (64, 64)), made, dict(prompt="opened from Finder", seed=77, steps=2, width=64,
                                                    height=64, model="schnell", version="0.1.0"))
    QApplication.sendEvent(QApplication.instance(), QFileOpenEvent(str(made)))
    assert window.promptEdit.toPlainText() == "opened from Finder" and window.seedSpin.value() == 77


def test_image_argument_restores_settings(qtbot, tmp_path, tiny_schnell):
    from PIL import Image

    from mlx_flux.metadata import save_png

    made = tmp_path / "arg.png"
    save_png(Image.new("RGB", (64, 64)), made, dict(prompt="from the command line", seed=5, steps=3, width=64,
                                                    height=64, model="schnell", version="0.1.0"))
    _, window = open_window(qtbot, tmp_path / "data", tiny_schnell, extra=[str(made)])
    assert window.promptEdit.toPlainText() == "from the command line"
    wait_ready(qtbot, window)
    assert window.stepsSlider.value() == 3  # kept when the model's defaults arrive
    window.close()


def test_history_rows_paint_thumbnails_and_follow_the_palette(qtbot, window):
    """Rows are drawn with their thumbnails; the image area's background comes from the palette."""
    from PySide6.QtGui import QColor, QPalette

    seed_history(window, ["a long prompt " * 8, "short"])
    window.historyList.viewport().grab()  # paints every visible row through the delegate
    pixmap = window.historyModel.data(window.historyModel.index(0), Qt.ItemDataRole.DecorationRole)
    assert not pixmap.isNull() and pixmap.width() > 0

    dark = QPalette(window.previewView.palette())
    dark.setColor(QPalette.ColorRole.Base, QColor("#101010"))
    window.previewView.setPalette(dark)
    window.previewView.clear()
    corner = window.previewView.grab().toImage().pixelColor(window.previewView.width() // 2, 30)
    assert corner.lightness() < 40  # no hard-coded light background


def test_default_data_dir_is_the_platform_app_data_folder(monkeypatch, tmp_path, qapp):
    from app.paths import default_data_dir

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    qapp.setApplicationName("mlx-flux")
    assert default_data_dir() == tmp_path / "share" / "mlx-flux"


def test_prompt_has_focus_and_tab_goes_to_generate(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not None, timeout=TIMEOUT)
    window.promptEdit.setFocus()
    qtbot.keyClick(window.promptEdit, Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is window.generateButton


def test_an_image_naming_a_hub_model_does_not_start_a_download(qtbot, window, tmp_path, isolated):
    from PIL import Image

    from mlx_flux.metadata import save_png

    made = tmp_path / "dev.png"
    save_png(Image.new("RGB", (64, 64)), made, dict(prompt="made with dev", seed=9, steps=20, guidance=4.0,
                                                    width=64, height=64, model="black-forest-labs/FLUX.1-dev",
                                                    version="0.1.0"))
    loads = len(isolated)
    answer_next_dialog(qtbot, "switchModelButton")  # the person agrees to the other model
    assert drop_file(window, made)
    assert window.controls.current_model() == "black-forest-labs/FLUX.1-dev"
    assert window.stepsSlider.value() == 20 and window.guidanceSlider.isEnabled()
    assert window.controls.guidanceValueSpin.text() == "4.0"
    assert not window.queue.is_busy() and len(isolated) == loads  # nothing fetched yet
    status = window.modelStatusLabel.text()  # FLUX.1-dev is on this machine's disk, or not
    assert "loads on Generate" in status or status.endswith("not downloaded")


QUIT_AFTER_COPY = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtGui import QImage
from app.main import create_app
from app.window import Shown

app, window = create_app(["mlx-flux", "--data-dir", sys.argv[1]])
image = QImage(32, 32, QImage.Format.Format_RGB32)
image.fill(0x336699)
window.show_image(Shown(image))
window.copy_image()
QTimer.singleShot(200, app.quit)
sys.exit(app.exec())
"""


def test_quitting_after_copying_an_image_exits_cleanly(tmp_path):
    """A copied image must not crash the process when Qt tears the clipboard down at exit."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", QUIT_AFTER_COPY, str(tmp_path / "data")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def test_export_never_replaces_a_file_the_dialog_did_not_name(qtbot, window, tmp_path):
    generate(qtbot, window, "keep my photo")
    (tmp_path / "photo.jpg").write_bytes(b"my holiday")
    assert window.export_to(tmp_path / "photo", "jpeg") is None  # "photo" + .jpg would replace it
    assert (tmp_path / "photo.jpg").read_bytes() == b"my holiday"
    assert "photo.jpg already exists" in window.messageBar.text()
    assert window.export_to(tmp_path / "photo.jpg", "jpeg") == tmp_path / "photo.jpg"  # named: the dialog asked
