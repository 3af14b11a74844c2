"""The life of a run in the window, on the stand-in engine: Esc where the focus is, cancelling
a queue (asked first) or a decode (the image is discarded), the decode phase in the progress,
and quitting during a run (asked; nothing in flight lost; the prompt and the queue kept)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

import app.worker as worker_module
from test_app_support import (
    TIMEOUT, FakePipeline, answer_box, fake_loader, open_window, small, type_prompt, visible_box, wait_ready,
)


@pytest.fixture
def fake(monkeypatch):
    pipe = FakePipeline()
    monkeypatch.setattr(worker_module, "load_pipeline", fake_loader(pipe))
    return pipe


@pytest.fixture
def model(tmp_path) -> Path:
    folder = tmp_path / "fake-schnell"  # a local "model": it loads (through the fake) at start
    folder.mkdir()
    return folder


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


def fake_window(qtbot, data_dir: Path, model: Path):
    _, window = open_window(qtbot, data_dir, model)
    wait_ready(qtbot, window)
    small(qtbot, window)
    return window


@pytest.fixture
def window(qtbot, data_dir, model, fake):
    w = fake_window(qtbot, data_dir, model)
    yield w
    w.close()


def hold_steps(window) -> threading.Semaphore:
    """Each step waits (on the worker thread) for one release by the test."""
    steps = threading.Semaphore(0)
    window.queue.worker.progress.connect(lambda *a: steps.acquire(timeout=TIMEOUT / 1000),
                                         Qt.ConnectionType.DirectConnection)
    return steps


def start(qtbot, window, prompt: str, count: int = 1) -> None:
    """Type the prompt, set the count, click Generate; returns once step 1 is reported."""
    window.countSpin.setValue(count)
    type_prompt(qtbot, window, prompt)
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)


def pngs(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "images").rglob("*.png"))


# -- 1. Esc acts where the focus is; cancelling a queue asks --------------------------------------
def test_esc_in_the_history_search_clears_it_and_the_run_goes_on(qtbot, window, data_dir):
    steps = hold_steps(window)
    start(qtbot, window, "a lighthouse")
    window.historySearch.setFocus()
    qtbot.keyClicks(window.historySearch, "fox")
    qtbot.keyClick(window.historySearch, Qt.Key.Key_Escape)
    assert window.historySearch.text() == ""  # the field's Esc
    assert window.queue.running is not None and not window.queue.is_cancelling(window.queue.running)
    qtbot.keyClick(window.promptEdit, Qt.Key.Key_Escape)  # in the prompt: nothing destructive
    assert window.promptEdit.toPlainText() == "a lighthouse"
    assert not window.queue.is_cancelling(window.queue.running)
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT):
        steps.release(10)
    wait_ready(qtbot, window)
    assert window.historyModel.rowCount() == 1 and len(pngs(data_dir)) == 1


def test_esc_outside_a_text_field_cancels_a_single_image_without_asking(qtbot, window, data_dir):
    steps = hold_steps(window)
    start(qtbot, window, "one image")
    window.previewView.setFocus()
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        qtbot.keyClick(window.previewView, Qt.Key.Key_Escape)
        assert visible_box(window, "confirmCancelBox") is None
        steps.release(10)
    assert window.progressLabel.text() == "Cancelled" and window.historyModel.rowCount() == 0
    assert pngs(data_dir) == []


def test_cancelling_a_queue_asks_first(qtbot, window, data_dir):
    steps = hold_steps(window)
    start(qtbot, window, "first")
    type_prompt(qtbot, window, "second")  # another prompt: queued behind, not batched
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    type_prompt(qtbot, window, "third")
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert len(window.queue.pending) == 2

    qtbot.mouseClick(window.cancelButton, Qt.MouseButton.LeftButton)
    box = visible_box(window, "confirmCancelBox")
    assert box is not None and box.text() == "Cancel the running image and 2 queued?"
    answer_box(qtbot, window, "confirmCancelBox", "keepGoingButton")
    assert len(window.queue.pending) == 2 and not window.queue.is_cancelling(window.queue.running)

    window.previewView.setFocus()
    qtbot.keyClick(window.previewView, Qt.Key.Key_Escape)  # Esc asks the same question
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        answer_box(qtbot, window, "confirmCancelBox", "cancelAllButton")
        steps.release(1)  # the step under way ends; the run stops there
    assert window.historyModel.rowCount() == 0 and pngs(data_dir) == []
    assert window.progressLabel.text() == "Cancelled"

    start(qtbot, window, "the menu item still works", count=2)
    window.cancelAction.trigger()
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        answer_box(qtbot, window, "confirmCancelBox", "cancelAllButton")
        steps.release(1)  # the step under way ends; the run stops there
    assert window.historyModel.rowCount() == 0


# -- 2. and 3. the decode: visible, estimated, and cancelling it discards the image -----------
def test_the_decode_shows_and_cancelling_it_discards_the_image(qtbot, window, fake, data_dir):
    fake.decode_gate = threading.Event()
    start(qtbot, window, "decoded then discarded")
    qtbot.waitUntil(lambda: window.progressLabel.text().startswith("Decoding…"), timeout=TIMEOUT)
    assert fake.decoding.is_set()
    assert window.progressBar.maximum() == 0  # busy: the decode has no steps to count
    first = window.progressLabel.text()
    qtbot.waitUntil(lambda: window.progressLabel.text() != first, timeout=TIMEOUT)  # the clock ticks
    assert window.progressLabel.text().startswith("Decoding… · ")

    qtbot.mouseClick(window.cancelButton, Qt.MouseButton.LeftButton)
    assert window.progressLabel.text().startswith("Finishing… the image will be discarded")
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        fake.decode_gate.set()
    assert pngs(data_dir) == [] and window.historyModel.rowCount() == 0 and len(window.history) == 0
    assert window.progressLabel.text() == "Cancelled" and window.progressBar.maximum() > 0


def test_starting_is_busy_and_the_estimate_includes_the_decode(qtbot, window):
    begin = threading.Event()  # the run waits (on the worker thread) before its first step
    window.queue.worker.jobStarted.connect(lambda *a: begin.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    panel = window.imagePanel
    window.countSpin.setValue(1)
    type_prompt(qtbot, window, "timed")
    with qtbot.waitSignal(window.queue.jobStarted, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert window.progressLabel.text().startswith("Starting…") and window.progressBar.maximum() == 0
    first = window.progressLabel.text()
    qtbot.waitUntil(lambda: window.progressLabel.text() != first, timeout=TIMEOUT)  # the clock ticks
    assert window.progressLabel.text().startswith("Starting… · ")
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        begin.set()
    # No decode measured at this size yet: it counts as one more step.
    panel.start_run(4, 96, 96)
    panel.show_step(2, 4, 4.0)
    assert window.progressLabel.text() == "Step 2/4 · 4.0 s · about 6.0 s left"
    assert (window.progressBar.maximum(), window.progressBar.value()) == (4, 2)
    panel.show_step(4, 4, 8.0)  # the last step: the decode is still to come
    assert window.progressLabel.text() == "Step 4/4 · 8.0 s · about 2.0 s left"
    # Once measured, the decode's own time.
    panel.note_decode(96, 96, 3.0)
    panel.start_run(4, 96, 96)
    panel.show_step(2, 4, 4.0)
    assert window.progressLabel.text() == "Step 2/4 · 4.0 s · about 7.0 s left"
    panel.show_batch_step(1, 2, 4, 1, 2)  # images 1-2 of 4 in chunks of two: four decodes to come
    panel.show_step(1, 4, 2.0)
    assert window.progressLabel.text() == "Images 1–2 of 4 · step 1/2 · 2.0 s · about 18 s left"
    panel.reset_progress("Ready")


def test_a_finished_run_remembers_its_decode_time(qtbot, window, fake):
    start(qtbot, window, "measured")
    wait_ready(qtbot, window)
    assert window.imagePanel.decode_times.per_image(64, 64) is not None


# -- 4. and 5. quitting during a run; what the next launch finds ----------------------------------
def queue_two_behind(qtbot, window, steps=None) -> None:
    """A running "first" (held at step 1 when `steps` holds them) and two queued prompts."""
    start(qtbot, window, "first")
    for prompt in ("second", "third"):
        type_prompt(qtbot, window, prompt)
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert len(window.queue.pending) == 2


def saved_jobs(data_dir: Path) -> list[str]:
    from app import savedqueue

    return [p.prompt for p in savedqueue.load(data_dir)]


def history_prompts(data_dir: Path) -> list[str]:
    from app.history import HistoryStore

    store = HistoryStore(data_dir / "history.sqlite3", data_dir)
    try:
        return sorted(e.prompt for e in store.search())
    finally:
        store.close()


def test_quit_during_a_run_asks_then_stops_and_the_queue_waits_for_the_next_launch(
        qtbot, data_dir, model, fake):
    window = fake_window(qtbot, data_dir, model)
    steps = hold_steps(window)
    queue_two_behind(qtbot, window)
    type_prompt(qtbot, window, "a prompt still being written")

    window.quitAction.trigger()
    answer_box(qtbot, window, "confirmQuitBox", "cancelQuitButton")
    assert window.isVisible() and len(window.queue.pending) == 2 and window.queue.running is not None

    window.quitAction.trigger()
    answer_box(qtbot, window, "confirmQuitBox", "stopAndQuitButton")
    assert window.isVisible() and window.progressLabel.text().startswith("Stopping…")  # not frozen: says so
    assert not window.queue.pending
    steps.release(1)  # the step under way ends, the run stops there, then the window closes
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=TIMEOUT)
    assert not window.queue._thread.isRunning()
    assert pngs(data_dir) == [] and history_prompts(data_dir) == []
    assert saved_jobs(data_dir) == ["first", "second", "third"]

    again = fake_window(qtbot, data_dir, model)
    assert again.promptEdit.toPlainText() == "a prompt still being written"
    assert again.messageBar.isVisible()
    assert again.messageBar.text() == "3 images were still queued when the app quit."
    assert not again.queue.is_busy()  # paused: nothing starts on its own
    with qtbot.waitSignals([again.queue.finished] * 3, timeout=TIMEOUT):
        qtbot.mouseClick(again.messageBar.findChild(QPushButton, "generateSavedButton"), Qt.MouseButton.LeftButton)
    wait_ready(qtbot, again)
    assert sorted(e.prompt for e in again.historyModel.entries()) == ["first", "second", "third"]
    assert not again.messageBar.isVisible()
    again.close()
    assert saved_jobs(data_dir) == []


def test_finish_then_quit_saves_the_image_in_the_history_and_keeps_the_queue(qtbot, data_dir, model, fake):
    fake.decode_gate = threading.Event()
    window = fake_window(qtbot, data_dir, model)
    queue_two_behind(qtbot, window)
    qtbot.waitUntil(lambda: window.progressLabel.text().startswith("Decoding…"), timeout=TIMEOUT)
    window.quitAction.trigger()
    answer_box(qtbot, window, "confirmQuitBox", "finishThenQuitButton")
    assert window.isVisible() and not window.queue.pending  # the queued ones wait for next time
    fake.decode_gate.set()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=TIMEOUT)
    assert len(pngs(data_dir)) == 1 and history_prompts(data_dir) == ["first"]
    assert saved_jobs(data_dir) == ["second", "third"]

    again = fake_window(qtbot, data_dir, model)
    assert again.promptEdit.toPlainText() == "third"
    assert again.messageBar.text() == "2 images were still queued when the app quit."
    qtbot.mouseClick(again.messageBar.findChild(QPushButton, "discardSavedButton"), Qt.MouseButton.LeftButton)
    assert saved_jobs(data_dir) == [] and not again.queue.is_busy() and not again.messageBar.isVisible()
    again.close()
    third = fake_window(qtbot, data_dir, model)
    assert not third.messageBar.isVisible()  # discarded for good
    third.close()


def test_an_image_missing_from_the_history_is_listed_at_the_next_start(qtbot, data_dir, model, fake):
    from app.history import HistoryStore

    window = fake_window(qtbot, data_dir, model)
    for prompt in ("listed", "written but never listed"):
        start(qtbot, window, prompt)
        wait_ready(qtbot, window)
    window.close()
    store = HistoryStore(data_dir / "history.sqlite3", data_dir)  # as if the app died before the row
    (lost,) = [entry for entry in store.search() if entry.prompt != "listed"]
    store.delete(lost.id)
    store.close()
    image = lost.image_path
    (image.parent / "120000-5.png").write_bytes(image.read_bytes()[:8])  # not a readable PNG of ours
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image.parent / "120001-6.png")  # no settings in it
    Image.new("RGB", (8, 8)).save(data_dir / "images" / "holiday.png")  # not ours

    again = fake_window(qtbot, data_dir, model)
    assert [e.prompt for e in again.historyModel.entries()] == ["written but never listed", "listed"]
    entry = again.historyModel.entries()[0]
    assert entry.prompt == "written but never listed" and entry.image_path == image
    assert entry.choice.source == str(model)  # the model it loads: the PNG names fake-schnell only
    assert again.history.thumbnail(entry.id)
    again.close()


QUIT_WHILE_DECODING = r"""
import sys, threading
sys.path.insert(0, sys.argv[1])
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMessageBox, QPushButton
import app.worker as worker_module
from test_app_support import FakePipeline, fake_loader

data, model, answer = sys.argv[2], sys.argv[3], sys.argv[4]
pipe = FakePipeline(decode_gate=threading.Event())
worker_module.load_pipeline = fake_loader(pipe)
from app.main import create_app

app, window = create_app(["mlx-flux-app", "--data-dir", data, "--model", model])
window.show()
window.widthSpin.setValue(512)
window.heightSpin.setValue(512)
window.stepsSlider.setValue(2)
window.promptEdit.setPlainText("quit while decoding")
quit_sent = []

def poll():
    box = next((b for b in window.findChildren(QMessageBox, "confirmQuitBox") if b.isVisible()), None)
    if box is not None:
        box.findChild(QPushButton, answer).click()
        pipe.decode_gate.set()  # the decode ends once the question is answered
    elif pipe.decoding.is_set() and not quit_sent:
        quit_sent.append(True)
        threading.Timer(5.0, pipe.decode_gate.set).start()  # an app that asks nothing: it ends anyway
        window.quitAction.trigger()  # File > Quit
    QTimer.singleShot(20, poll)

def go():
    if window.queue.loading is not None:
        QTimer.singleShot(20, go)
        return
    window.generate()
    poll()

QTimer.singleShot(0, go)
sys.exit(app.exec())
"""


@pytest.mark.parametrize("answer, kept", [("finishThenQuitButton", ["quit while decoding"]),
                                          ("stopAndQuitButton", [])])
def test_quit_while_the_last_step_decodes_exits_cleanly(tmp_path, model, answer, kept):
    """File > Quit during the decode: exit status 0, and every image on disk in the history."""
    import os
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", QUIT_WHILE_DECODING, str(Path(__file__).parent), str(data_dir),
                           str(model), answer], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert "Destroyed while thread" not in proc.stderr
    assert history_prompts(data_dir) == kept
    assert len(pngs(data_dir)) == len(kept)
    assert saved_jobs(data_dir) == ([] if kept else ["quit while decoding"])


def test_cancel_while_starting_says_cancelling(qtbot, window, data_dir):
    begin = threading.Event()
    window.queue.worker.jobStarted.connect(lambda *a: begin.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    type_prompt(qtbot, window, "never started")
    with qtbot.waitSignal(window.queue.jobStarted, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(window.cancelButton, Qt.MouseButton.LeftButton)
    window.imagePanel._ticker.timeout.emit()  # a tick of the clock must not bring "Starting…" back
    assert window.progressLabel.text() == "Cancelling…"
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        begin.set()
    assert window.progressLabel.text() == "Cancelled" and pngs(data_dir) == []
