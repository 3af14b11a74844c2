"""Every failure a person can run into shows a clear message in the window, and the app stays
usable with its history and saved images intact."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

import app.window as window_module
import app.worker as worker_module
from app.history import HistoryError
from test_app_support import TIMEOUT, caching_loader, open_window, ready_window, small, type_prompt, wait_ready
from test_app_window import generate, seed_history


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader())


def copy_model(src: Path, dst: Path) -> Path:
    """The Hugging Face layout part of a tiny model (not the single files beside it)."""
    dst.mkdir(parents=True)
    shutil.copy(src / "model_index.json", dst)
    for sub in ("scheduler", "transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        shutil.copytree(src / sub, dst / sub)
    return dst


def assert_usable(qtbot, window, model: Path) -> None:
    """The person picks a working model and gets an image."""
    window.choose_model(str(model))
    wait_ready(qtbot, window)
    small(qtbot, window)
    before = window.historyModel.rowCount()
    generate(qtbot, window, "it still works")
    assert window.historyModel.rowCount() == before + 1


def broken_models(tmp_path: Path, tiny: Path) -> dict[str, tuple[Path, str]]:
    """name -> (model folder, a word the message must contain)."""
    incomplete = copy_model(tiny, tmp_path / "incomplete")
    for f in (incomplete / "transformer").glob("*.safetensors*"):
        f.unlink()
    corrupt = copy_model(tiny, tmp_path / "corrupt")
    for f in (corrupt / "transformer").glob("*.safetensors"):
        f.write_bytes(b"\x00" * 64 + b"not really a safetensors file")
    return {
        "missing": (tmp_path / "no-such-model", "no-such-model"),
        "incomplete": (incomplete, "transformer"),
        "corrupt": (corrupt, ""),
    }


@pytest.mark.parametrize("kind", ["missing", "incomplete", "corrupt"])
def test_bad_model_folder_shows_a_message_and_the_app_recovers(qtbot, tmp_path, tiny_schnell, kind):
    model, word = broken_models(tmp_path, tiny_schnell)[kind]
    _, window = open_window(qtbot, tmp_path / "data", model)
    seed_history(window, ["kept safe"])
    wait_ready(qtbot, window)
    text = window.messageLabel.text()
    assert window.messageBar.kind == "error" and "Could not load the model" in text
    assert word.lower() in text.lower()
    assert "Traceback" not in text and "\n" not in text
    assert "loads on Generate" in window.modelStatusLabel.text() or "not" in window.progressLabel.text()

    # Generating with the broken model says so again, without piling up queued jobs.
    type_prompt(qtbot, window, "try anyway")
    window.countSpin.setValue(3)
    window.messageBar.dismiss()
    with qtbot.waitSignal(window.queue.failed, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert window.messageBar.kind == "error" and "Could not load" in window.messageLabel.text()
    assert not window.queue.is_busy() and window.generateButton.isEnabled()

    window.countSpin.setValue(1)
    assert_usable(qtbot, window, tiny_schnell)
    assert "kept safe" in [e.prompt for e in window.historyModel.entries()]
    window.close()


@pytest.fixture
def window(qtbot, tmp_path, tiny_schnell):
    w = ready_window(qtbot, tmp_path / "data", tiny_schnell)
    yield w
    w.close()


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("kernel exploded"), "Something unexpected stopped this: kernel exploded"),
    (MemoryError(), "Out of memory"),
])
def test_exception_in_the_worker_is_a_message(qtbot, window, monkeypatch, error, expected):
    from mlx_flux.pipeline import FluxPipeline

    entries = seed_history(window, ["older image"])

    def explode(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(FluxPipeline, "generate", explode)
    type_prompt(qtbot, window, "doomed")
    with qtbot.waitSignal(window.queue.failed, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert expected in window.messageLabel.text()
    assert "Error" not in window.messageLabel.text()  # no Python class names in the window
    assert window.progressLabel.text() == "Failed"
    assert window.historyModel.entries() == entries and entries[0].image_path.is_file()

    monkeypatch.undo()
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader())
    generate(qtbot, window, "recovered")
    assert window.messageBar.isHidden()
    assert window.historyModel.rowCount() == 2


def test_disk_full_keeps_the_image_on_screen_and_export_works(qtbot, window, monkeypatch, tmp_path):
    entries = seed_history(window, ["older image"])

    def disk_full(image, path, metadata):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(worker_module, "save_image", disk_full)
    generate(qtbot, window, "nowhere to go")
    assert "disk is full" in window.messageLabel.text() and "Export" in window.messageLabel.text()
    assert not window.previewView.image().isNull()
    assert window.historyModel.entries() == entries  # nothing half-recorded
    assert not window.revealButton.isEnabled()  # there is no file to show
    exported = window.export_to(tmp_path / "elsewhere" / "saved.png")
    assert exported is not None and exported.is_file()


def test_history_write_failure_is_reported(qtbot, window, monkeypatch):
    def failing_add(*args, **kwargs):
        raise HistoryError("Could not save to history: database or disk is full")

    monkeypatch.setattr(window.history, "add", failing_add)
    result = generate(qtbot, window, "unrecorded")
    assert "Could not save to history" in window.messageLabel.text()
    assert str(result.saved_path) in window.messageLabel.text()  # the image itself is safe
    assert result.saved_path.is_file()


def test_export_failure_is_reported(qtbot, window, tmp_path):
    generate(qtbot, window, "export somewhere odd")
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    assert window.export_to(blocker / "sub" / "x.png") is None
    assert "Could not export" in window.messageLabel.text()


def test_unusable_data_dir_is_reported_at_start_and_the_app_still_works(qtbot, tmp_path, tiny_schnell):
    data = tmp_path / "data"
    data.write_text("a file where the data folder should be")  # fails even for root
    _, window = open_window(qtbot, data, tiny_schnell)
    wait_ready(qtbot, window)
    assert "data folder" in window.messageLabel.text()
    small(qtbot, window)
    generate(qtbot, window, "saved nowhere")
    assert "could not be saved" in window.messageLabel.text()
    assert not window.previewView.image().isNull()
    window.close()


def test_corrupt_history_database_is_left_alone_and_the_app_runs(qtbot, tmp_path, tiny_schnell):
    data = tmp_path / "data"
    data.mkdir()
    garbage = b"definitely not sqlite " * 200
    (data / "history.sqlite3").write_bytes(garbage)
    _, window = open_window(qtbot, data, tiny_schnell)
    wait_ready(qtbot, window)
    assert "history" in window.messageLabel.text().lower()
    seed_history(window, ["this session only"])
    assert window.historyModel.rowCount() == 1
    window.close()
    assert (data / "history.sqlite3").read_bytes() == garbage  # never overwritten


def test_missing_image_file_of_an_entry_is_a_warning(qtbot, window):
    from test_app_window import click_history_row

    entry, = seed_history(window, ["file went away"])
    entry.image_path.unlink()
    click_history_row(qtbot, window, 0)
    assert "missing" in window.messageLabel.text()
    qtbot.mouseClick(window.historyPanel.useSettingsButton, Qt.MouseButton.LeftButton)
    assert window.promptEdit.toPlainText() == "file went away"  # settings are still restored
    assert not window.exportButton.isEnabled()


def test_about_and_reveal_do_not_crash_without_an_image(qtbot, window, monkeypatch):
    revealed = []
    monkeypatch.setattr(window_module, "reveal_in_file_manager", revealed.append)
    window.revealAction.trigger()
    window.copyImageAction.trigger()
    assert revealed == [] and window.export_to(Path("/tmp/never.png")) is None


def test_a_data_folder_that_cannot_be_written_still_shows_its_history(qtbot, tmp_path, tiny_schnell, monkeypatch):
    """Instead of an empty history for the session, the existing one, read-only (nothing written)."""
    from app.history import HistoryStore
    from app.params import GenerationParams, ModelChoice
    from app.paths import DataDir
    from mlx_flux.request import GenerationRequest

    data = DataDir(tmp_path / "data")
    data.prepare()
    store = HistoryStore(data.database, data.root)
    request = GenerationRequest("made last week", 64, 64, steps=4, seed=5, model="tiny")
    store.add(GenerationParams(ModelChoice(str(tiny_schnell)), request), data.images / "old.png")
    store.close()
    before = data.database.read_bytes()
    monkeypatch.setattr(DataDir, "prepare", lambda self: f"The data folder {self.root} is not writable.")
    _, window = open_window(qtbot, data.root, tiny_schnell)
    wait_ready(qtbot, window)
    assert window.historyModel.rowCount() == 1 and window.historyModel.entry(0).prompt == "made last week"
    assert window.history.read_only and "not writable" in window.messageLabel.text()
    window.close()
    assert data.database.read_bytes() == before


def test_a_damaged_history_row_is_listed_and_painted(qtbot, window):
    """A prompt stored as a BLOB (and no readable request) raised in the row painter on every repaint."""
    import sqlite3

    seed_history(window, ["fine"])
    db = sqlite3.connect(window.history.path)
    db.execute("UPDATE entries SET prompt = ?, request = ?", (b"\xff\xfeblob prompt", "not json"))
    db.commit()
    db.close()
    window.refresh_history()
    entry = window.historyModel.entry(0)
    assert isinstance(entry.prompt, str) and "blob prompt" in entry.prompt
    window.historyList.viewport().repaint()  # paints the row without raising
    qtbot.wait(50)


def test_leftovers_of_a_killed_save_are_cleaned_at_the_next_start(qtbot, tmp_path, tiny_schnell):
    import os
    import time

    day = tmp_path / "data" / "images" / "2026-01-01"
    day.mkdir(parents=True)
    stale, fresh, mine = day / ".120000-7.png.k2j4.part", day / ".120001-8.png.x9a1.part", day / "notes.part"
    for path in (stale, fresh, mine):
        path.write_bytes(b"half an image")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    _, window = open_window(qtbot, tmp_path / "data", tiny_schnell)
    wait_ready(qtbot, window)
    assert not stale.exists()           # a killed run's temporary file
    assert fresh.exists() and mine.exists()  # one being written right now, and a file of the person's
    window.close()
