"""The life of a run in the window, on the stand-in engine: Esc where the focus is, cancelling
a queue (asked first) or a decode (the image is discarded), the decode phase in the progress,
and quitting during a run (asked; nothing in flight lost; the prompt and the queue kept)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

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
