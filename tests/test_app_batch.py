"""Batches and warm start in the window, driven like a person would, on the real engine with a
tiny random model: several seeds of one request are made by one `generate_batch`, each image
still its own PNG and history entry; a freshly loaded model is warmed up in the background."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

import app.worker as worker_module
from test_app_support import (
    TIMEOUT, answer_box, caching_loader, open_window, ready_window, set_spin, small, type_prompt, wait_ready,
)
from test_app_window import click_history_row

DURATION = r"(\d+\.\d s|\d+ s|\d+ min \d\d s)"  # format_duration's three forms


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader([]))


@pytest.fixture
def window(qtbot, tmp_path, tiny_schnell):
    w = ready_window(qtbot, tmp_path / "data", tiny_schnell)
    yield w
    w.close()


@pytest.fixture
def spy(window, monkeypatch):
    """Records every generate / generate_batch call the worker makes on the loaded pipeline."""
    pipe = window.queue.worker._pipe
    calls: list[tuple[str, list[int]]] = []
    real_batch, real_single = pipe.generate_batch, pipe.generate

    def generate_batch(prompt, seeds, *args, **kwargs):
        calls.append(("batch", list(seeds)))
        return real_batch(prompt, seeds, *args, **kwargs)

    def generate(prompt, *args, **kwargs):
        calls.append(("single", [kwargs.get("seed")]))
        return real_single(prompt, *args, **kwargs)

    monkeypatch.setattr(pipe, "generate_batch", generate_batch)
    monkeypatch.setattr(pipe, "generate", generate)
    return calls


@pytest.fixture
def chunks_of(window, monkeypatch):
    """Makes the engine say that only `n` images of this size fit in one transformer pass."""
    def set_chunk_size(n: int) -> None:
        monkeypatch.setattr(window.queue.worker._pipe, "auto_max_batch", lambda width, height: n)
    return set_chunk_size


@pytest.fixture
def one_step_at_a_time(window):
    """On the worker thread: hold each step until the test releases the semaphore once more."""
    allowed = threading.Semaphore(0)
    window.queue.worker.progress.connect(lambda *a: allowed.acquire(timeout=TIMEOUT / 1000),
                                         Qt.ConnectionType.DirectConnection)
    yield allowed
    allowed.release(1000)  # never leave the worker waiting when a test fails


def label_after_each_step(window) -> list[str]:
    """The progress text as the person reads it once each step has been shown."""
    seen: list[str] = []
    # Connected after the window's own slot, so it runs after the label was updated.
    window.queue.progress.connect(lambda *a: seen.append(window.progressLabel.text()))
    return seen


def hold_steps(window) -> threading.Event:
    """On the worker thread: hold each step until the returned event is set."""
    gate = threading.Event()
    window.queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    return gate


def test_batch_of_three_seeds_is_one_generate_batch_with_three_pngs_and_entries(qtbot, window, spy):
    from mlx_flux.metadata import read_metadata

    events: list[str] = []
    window.queue.preview.connect(lambda image: events.append("preview"))
    window.queue.finished.connect(lambda result: events.append(f"image {result.params.seed}"))
    gate = hold_steps(window)
    set_spin(qtbot, window.seedSpin, 10)  # typing a seed locks it: seeds 10, 11, 12
    set_spin(qtbot, window.countSpin, 3)
    type_prompt(qtbot, window, "three lanterns")
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    # What a person sees while the batch runs: its three images in the queue, being made.
    assert window.queueList.count() == 3 and window.queueList.isVisible()
    assert all(window.queueList.item(i).text().startswith("▶") for i in range(3))
    assert "3 images · seeds 10–12" in window.imageInfoLabel.text()
    assert window.previewView.is_preview()
    gate.set()
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 3 and not window.queue.is_busy(), timeout=TIMEOUT)

    assert spy == [("batch", [10, 11, 12])]  # one pass, no image made on its own
    assert events.count("preview") == 4  # one per step of the (single-chunk) batch
    assert events[:4] == ["preview"] * 4 and events[4:] == ["image 10", "image 11", "image 12"]
    entries = window.historyModel.entries()
    assert [e.seed for e in entries] == [12, 11, 10]  # newest first: saved in seed order
    paths = [e.image_path for e in entries]
    assert len(set(paths)) == 3 and all(p.is_file() for p in paths)
    for entry in entries:
        meta = read_metadata(entry.image_path)
        assert meta["seed"] == entry.seed and meta["prompt"] == "three lanterns"
    # The last image is shown, finished, with its seed; the app is ready.
    assert not window.previewView.is_preview() and "seed 12" in window.imageInfoLabel.text()
    assert window.progressLabel.text().startswith("Done") and window.generateButton.text() == "Generate"
    assert not window.queueList.isVisible()


def test_cancel_mid_batch_then_generate_again(qtbot, window, spy):
    gate = hold_steps(window)
    steps: list[int] = []
    window.queue.progress.connect(lambda s, t, e: steps.append(s))
    set_spin(qtbot, window.countSpin, 3)
    type_prompt(qtbot, window, "never finished")
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert window.cancelButton.isEnabled()
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        qtbot.mouseClick(window.cancelButton, Qt.MouseButton.LeftButton)
        answer_box(qtbot, window, "confirmCancelBox", "cancelAllButton")  # three images: asked first
        gate.set()
    assert steps == [1]  # stopped right after the step it was in
    assert window.historyModel.rowCount() == 0
    assert not window.cancelButton.isEnabled() and not window.queueList.isVisible()
    assert window.progressLabel.text() in ("Cancelled", "Ready")
    assert not list(Path(window.data_dir.images).rglob("*.png"))  # nothing half-made was kept

    set_spin(qtbot, window.countSpin, 1)
    type_prompt(qtbot, window, "after the batch")
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert window.historyModel.rowCount() == 1
    assert [kind for kind, _ in spy] == ["batch", "single"]  # one image: the plain path


def test_model_is_warmed_up_in_the_background_after_loading(qtbot, tmp_path, tiny_schnell, monkeypatch):
    from mlx_flux.pipeline import FluxPipeline

    real = FluxPipeline.warmup
    started, release = threading.Event(), threading.Event()
    warmups: list[tuple[int, int, bool]] = []

    def warmup(self, width=1024, height=1024, batch=1, force=False):
        warmups.append((width, height, threading.current_thread() is threading.main_thread()))
        started.set()
        release.wait(TIMEOUT / 1000)  # a slow warm-up (a GPU compiling its kernels)
        return real(self, width, height, batch, force)

    monkeypatch.setattr(FluxPipeline, "warmup", warmup)
    _, window = open_window(qtbot, tmp_path / "data", tiny_schnell)
    try:
        qtbot.waitUntil(started.is_set, timeout=TIMEOUT)
        # The window answers while the worker warms up: typing works, the status says why it waits.
        type_prompt(qtbot, window, "typed while warming up")
        assert window.promptEdit.toPlainText() == "typed while warming up"
        qtbot.waitUntil(lambda: "Warming up" in window.progressLabel.text(), timeout=TIMEOUT)
        assert window.queue.loading is not None
        release.set()
        wait_ready(qtbot, window)
        size = (window.widthSpin.value(), window.heightSpin.value())
        assert warmups == [(*size, False)]  # once, at the size in the controls, off the GUI thread
        assert "ready" in window.modelStatusLabel.text()
        small(qtbot, window)
        with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT):
            qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
        wait_ready(qtbot, window)
        assert len(warmups) == 1  # the warm model is not warmed up again per run
    finally:
        release.set()
        window.close()


def test_progress_says_which_images_of_the_batch_are_being_made(qtbot, window, chunks_of):
    chunks_of(2)  # three images: 1-2 together, then 3
    seen = label_after_each_step(window)
    set_spin(qtbot, window.countSpin, 3)
    type_prompt(qtbot, window, "three kites")
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 3 and not window.queue.is_busy(), timeout=TIMEOUT)

    expected = [f"Images 1–2 of 3 · step {s}/4" for s in range(1, 5)] + \
               [f"Image 3 of 3 · step {s}/4" for s in range(1, 5)]
    assert [" · ".join(text.split(" · ")[:2]) for text in seen] == expected
    # Then the time so far and what is left of the whole batch (after its last step: the decode).
    for what, text in zip(expected, seen):
        assert re.fullmatch(rf"{what} · {DURATION} · about {DURATION} left", text), text
    assert window.progressLabel.text().startswith("Done in ")

    # One image keeps its wording.
    seen.clear()
    set_spin(qtbot, window.countSpin, 1)
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert len(seen) == 4
    for step, text in enumerate(seen, 1):
        assert re.fullmatch(rf"Step {step}/4 · {DURATION} · about {DURATION} left", text), text


def test_an_image_picked_in_the_history_stays_in_view_while_the_batch_goes_on(qtbot, window, chunks_of,
                                                                             one_step_at_a_time):
    steps = one_step_at_a_time
    chunks_of(2)  # seeds 20-21, then 22-23
    set_spin(qtbot, window.seedSpin, 20)
    set_spin(qtbot, window.countSpin, 4)
    type_prompt(qtbot, window, "four boats")
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    steps.release(4)  # the first two images are finished, the worker holds in step 1 of the next two
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 2 and
                    window.progressLabel.text().startswith("Images 3–4 of 4 · step 1/4"), timeout=TIMEOUT)
    assert window.previewView.is_preview()  # nobody picked an image: the view follows the run

    # The person clicks the first image of the batch in the history.
    entry = window.historyModel.entry(1)
    assert entry.seed == 20
    seed_before = window.seedSpin.value()
    click_history_row(qtbot, window, 1)
    finished = QImage(str(entry.image_path))
    assert window.previewView.image() == finished and not window.previewView.is_preview()
    # picking only looks: the controls keep their seed; the caption tells the picked image's
    assert window.seedSpin.value() == seed_before and "seed 20" in window.imageInfoLabel.text()

    previews: list[QImage] = []
    window.queue.preview.connect(previews.append)
    for step in (2, 3, 4):
        with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
            steps.release()
        # The run goes on where the person can see it (the progress line), not in the image.
        assert window.progressLabel.text().startswith(f"Images 3–4 of 4 · step {step}/4")
        assert window.previewView.image() == finished and not window.previewView.is_preview()
    assert len(previews) == 3
    steps.release()
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 4 and not window.queue.is_busy(), timeout=TIMEOUT)

    # The last two images went to the history; the view, the selection and the settings
    # stay on the one the person is looking at, which can be copied or exported.
    assert [e.seed for e in window.historyModel.entries()] == [23, 22, 21, 20]
    assert window.previewView.image() == finished and not window.previewView.is_preview()
    assert window.selected_entry().seed == 20 and window.shown.entry_id == entry.id
    assert window.seedSpin.value() == seed_before and "seed 20" in window.imageInfoLabel.text()
    assert window.exportButton.isEnabled() and window.progressLabel.text().startswith("Done in ")

    # Generate again: the view follows the new run's previews, then shows its image.
    set_spin(qtbot, window.countSpin, 1)
    type_prompt(qtbot, window, "one more boat")
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert window.previewView.is_preview() and window.previewView.image() != finished
    assert window.imageInfoLabel.text().startswith(f"Generating · seed {seed_before}")  # the controls' seed
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT) as blocker:
        steps.release(4)
    wait_ready(qtbot, window)
    assert window.previewView.image() == blocker.args[0].image and not window.previewView.is_preview()
    assert window.selected_entry().prompt == "one more boat"


def test_show_live_preview_goes_back_from_a_picked_image_to_the_run(qtbot, window, chunks_of, one_step_at_a_time):
    steps = one_step_at_a_time
    chunks_of(2)  # seeds 30-31, then 32-33
    set_spin(qtbot, window.seedSpin, 30)
    set_spin(qtbot, window.countSpin, 4)
    type_prompt(qtbot, window, "four kites")
    button = window.followLiveButton
    assert not button.isVisible()
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    assert not button.isVisible()  # a run, but the view follows it already
    steps.release(4)  # the first two images are finished, the worker holds in step 1 of the next two
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 2 and
                    window.progressLabel.text().startswith("Images 3–4 of 4 · step 1/4"), timeout=TIMEOUT)
    assert window.previewView.is_preview() and not button.isVisible()

    # The person picks the first image of the batch: the way back to the run appears.
    entry = window.historyModel.entry(1)
    assert entry.seed == 30
    click_history_row(qtbot, window, 1)
    finished = QImage(str(entry.image_path))
    assert window.previewView.image() == finished and not window.previewView.is_preview()
    assert button.isVisible()

    previews: list[QImage] = []
    window.queue.preview.connect(previews.append)
    steps.release()  # step 1's preview arrives (and stays out of view), the worker holds in step 2
    qtbot.waitUntil(lambda: len(previews) == 1 and
                    window.progressLabel.text().startswith("Images 3–4 of 4 · step 2/4"), timeout=TIMEOUT)
    assert window.previewView.image() == finished and button.isVisible()

    # One click: the newest preview at once, without a new run.
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.previewView.image() == previews[-1] and window.previewView.is_preview()
    assert window.previewView.image() != finished
    assert not button.isVisible()
    assert window.imageInfoLabel.text().startswith("Generating · 2 images · seeds 32, 33")
    assert window.queue.is_busy() and len(window.queue.running_jobs) == 2  # still the same run

    # Later previews replace it again.
    steps.release()
    qtbot.waitUntil(lambda: len(previews) == 2, timeout=TIMEOUT)
    assert previews[1] != previews[0]
    assert window.previewView.image() == previews[1] and window.previewView.is_preview()
    assert not button.isVisible()

    # Picked once more, then the run ends: nothing live to go back to, so no button.
    click_history_row(qtbot, window, 1)
    assert window.previewView.image() == finished and button.isVisible()
    steps.release(10)
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 4 and not window.queue.is_busy(), timeout=TIMEOUT)
    assert window.previewView.image() == finished and not window.previewView.is_preview()
    assert not button.isVisible()


def test_the_next_chunks_previews_take_the_label_and_actions_from_the_finished_image(
        qtbot, window, chunks_of, one_step_at_a_time):
    steps = one_step_at_a_time
    chunks_of(2)  # seeds 30-31, then 32-33
    set_spin(qtbot, window.seedSpin, 30)
    set_spin(qtbot, window.countSpin, 4)
    type_prompt(qtbot, window, "four kites")
    finished: list[QImage] = []
    window.queue.finished.connect(lambda result: finished.append(result.image))
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    steps.release(4)  # the first chunk is done; the second one's first preview is in view
    qtbot.waitUntil(lambda: len(finished) == 2 and
                    window.progressLabel.text().startswith("Images 3–4 of 4 · step 1/4"), timeout=TIMEOUT)
    assert window.previewView.is_preview() and window.previewView.image() != finished[1]
    # what the view shows is described, and Export (which would save seed 31) is out of reach
    assert window.imageInfoLabel.text().startswith("Generating · 2 images · seeds 32, 33")
    assert not window.exportButton.isEnabled() and not window.copyImageButton.isEnabled()
    steps.release(10)
    qtbot.waitUntil(lambda: not window.queue.is_busy(), timeout=TIMEOUT)
    assert window.previewView.image() == finished[-1] and not window.previewView.is_preview()
    assert window.imageInfoLabel.text().startswith("seed 33") and window.exportButton.isEnabled()


def test_show_live_preview_between_chunks_shows_the_newest_image_not_a_stale_preview(
        qtbot, window, chunks_of, one_step_at_a_time):
    steps = one_step_at_a_time
    chunks_of(2)
    set_spin(qtbot, window.seedSpin, 30)
    set_spin(qtbot, window.countSpin, 4)
    type_prompt(qtbot, window, "four kites")
    between = threading.Semaphore(0)

    def hold_after_the_first_chunk(result) -> None:  # on the worker thread, before the next chunk
        if result.params.seed == 31:
            between.acquire(timeout=TIMEOUT / 1000)

    window.queue.worker.finished.connect(hold_after_the_first_chunk, Qt.ConnectionType.DirectConnection)
    finished: list[QImage] = []
    window.queue.finished.connect(lambda result: finished.append(result.image))
    try:
        with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
            qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
        steps.release(4)
        qtbot.waitUntil(lambda: window.historyModel.rowCount() == 2, timeout=TIMEOUT)
        newest = window.historyModel.entry(0)
        assert newest.seed == 31 and window.imageInfoLabel.text().startswith("seed 31")

        click_history_row(qtbot, window, 1)  # seed 30, picked while the run waits between its chunks
        assert window.imageInfoLabel.text().startswith("seed 30") and window.followLiveButton.isVisible()
        qtbot.mouseClick(window.followLiveButton, Qt.MouseButton.LeftButton)
        # not the first chunk's last preview: the newest finished image, as a followed view shows it
        assert len(finished) == 2 and window.previewView.image() == finished[1]
        assert not window.previewView.is_preview() and window.imageInfoLabel.text().startswith("seed 31")
        assert window.selected_entry().id == newest.id and not window.followLiveButton.isVisible()
    finally:
        between.release()
    steps.release(10)
    qtbot.waitUntil(lambda: not window.queue.is_busy(), timeout=TIMEOUT)
    assert window.historyModel.rowCount() == 4 and window.imageInfoLabel.text().startswith("seed 33")


def test_esc_still_cancels_while_a_picked_image_is_in_view(qtbot, window, chunks_of, one_step_at_a_time):
    steps = one_step_at_a_time
    chunks_of(2)
    set_spin(qtbot, window.seedSpin, 40)
    set_spin(qtbot, window.countSpin, 4)
    type_prompt(qtbot, window, "four lanterns")
    with qtbot.waitSignal(window.queue.progress, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    steps.release(4)
    qtbot.waitUntil(lambda: window.historyModel.rowCount() == 2 and
                    window.progressLabel.text().startswith("Images 3–4 of 4 · step 1/4"), timeout=TIMEOUT)
    click_history_row(qtbot, window, 1)
    assert window.followLiveButton.isVisible()
    with qtbot.waitSignal(window.queue.idle, timeout=TIMEOUT):
        qtbot.keyClick(window.historyList, Qt.Key.Key_Escape)
        answer_box(qtbot, window, "confirmCancelBox", "cancelAllButton")  # two images: asked first
        steps.release(10)
    assert window.historyModel.rowCount() == 2 and window.progressLabel.text() == "Cancelled"
    assert not window.followLiveButton.isVisible()


def test_the_progress_bar_keeps_its_width_while_a_batch_counts(qtbot, window):
    # A window of ordinary width: at its minimum width the text wraps instead (test_app_layout.py).
    window.resize(1200, window.height())
    qtbot.waitUntil(lambda: window.width() == 1200)
    panel = window.imagePanel
    texts = [
        "Ready",
        "Step 2/28 · 1.2 s · about 9.6 s left",
        "Images 1–3 of 12 · step 1/28 · 0.4 s · about 12.3 s left",
        "Images 10–12 of 12 · step 28/28 · 1234.5 s · about 1234.5 s left",
        "Images 10–12 of 12 · step 27/28 · 11 min 59 s · about 12 min 00 s left",
    ]
    widths = []
    for text in texts:
        window.progressLabel.setText(text)
        panel.layout().activate()
        qtbot.waitUntil(lambda: window.progressLabel.text() == text)
        widths.append(window.progressBar.width())
        # The whole text is readable where the label is.
        assert window.progressLabel.width() >= window.progressLabel.fontMetrics().horizontalAdvance(text)
    assert len(set(widths)) == 1, widths
