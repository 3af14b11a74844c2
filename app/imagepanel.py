"""The middle of the window: messages, the image itself, what it is, what to do with it, progress."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QProgressBar, QPushButton, QStackedWidget, QToolButton, QVBoxLayout, QWidget,
)

from app.batchgrid import BatchGrid
from app.compare import CompareView
from app.controls import name_widget
from app.flowlayout import FlowLayout
from app.estimates import DecodeTimes
from app.imageview import ImageView
from app.maskpanel import MaskPanel
from app.messagebar import MessageBar
from app.params import GenerationParams

FILE_MANAGER = {"darwin": "Finder", "win32": "Explorer"}.get(sys.platform, "File Manager")
# The longest progress texts of a typical run (see show_step and format_duration), for the label's width.
PROGRESS_SAMPLES = (
    "Step 28/28 · 12 min 00 s · about 12 min 00 s left",
    "Images 10–12 of 12 · step 28/28 · 12 min 00 s · about 12 min 00 s left",
    "Images 10–12 of 12 · decoding… · 12 min 00 s · about 12 min 00 s left",
)
PLACEHOLDER = ("Type a prompt and press Generate.\n\nDrop an image made with mlx-flux here to reuse its settings;"
               "\ndrop any image on the input well to start from it.")


@dataclass
class Shown:
    """The image in the big view and where it came from (for export, copy, drag, reuse seed)."""

    image: QImage
    params: GenerationParams | None = None
    path: Path | None = None  # the saved PNG, if any
    entry_id: int | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """What an export writes into the file: the request's metadata."""
        return self.params.request.to_metadata() if self.params is not None else {}


class ProgressLabel(QLabel):
    """Asks for the width of the longest text of a typical run, one image or a batch, so that
    the bar beside it keeps its width while the text changes from step to step; in a narrow
    window it makes do with less and wraps instead of cutting the text."""

    NARROW = 120

    def __init__(self) -> None:
        super().__init__()
        self.setWordWrap(True)
        metrics = self.fontMetrics()
        self._wide = max(metrics.horizontalAdvance(text) for text in PROGRESS_SAMPLES)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(self._wide, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(min(self._wide, self.NARROW), super().minimumSizeHint().height())


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s"


class ImagePanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._batch: tuple[int, int, int, int, int] | None = None  # see show_batch_step
        # A phase without steps ("starting", "decoding", "finishing", "stopping"): the bar is
        # busy and the label's elapsed time ticks from `_phase_clock` on, added to `_elapsed`.
        self._phase: str | None = None
        self._phase_clock = 0.0
        self._elapsed = 0.0  # the run's elapsed seconds at its last step
        self._step = (0, 0)  # the last step / total shown
        self._size = (0, 0)  # the run's image size (decode times are per size)
        self.decode_times = DecodeTimes()
        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._show_phase)
        self.messageBar = MessageBar()
        self.previewView = name_widget(ImageView(), "previewView", "The generated image")
        self.previewView.set_placeholder(PLACEHOLDER)
        # While inpainting, the mask editor takes the image's place (see app/maskcontroller.py).
        self.maskPanel = MaskPanel()
        self.maskCanvas = self.maskPanel.maskCanvas
        self.viewStack = QStackedWidget()
        self.viewStack.setObjectName("viewStack")
        self.viewStack.addWidget(self.previewView)
        self.viewStack.addWidget(self.maskPanel)
        # A batch's images (or several history entries) in a grid, and two images side by side
        # (see app/viewer.py, which switches between them).
        self.batchGrid = name_widget(BatchGrid(), "batchGrid", "The images of a batch, with their seeds")
        self.compareView = name_widget(CompareView(), "compareView", "Two images side by side")
        self.viewStack.addWidget(self.batchGrid)
        self.viewStack.addWidget(self.compareView)
        self.imageInfoLabel = QLabel()
        self.imageInfoLabel.setObjectName("imageInfoLabel")
        self.imageInfoLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.imageInfoLabel.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.imageInfoLabel.setWordWrap(True)  # a long line would widen the window's minimum
        self.imageInfoLabel.setForegroundRole(self.palette().ColorRole.PlaceholderText)

        self.reuseSeedButton = name_widget(QPushButton("Reuse Seed"), "reuseSeedButton", None,
                                           "Lock the seed to this image's seed")
        self.useAsInputButton = name_widget(QPushButton("Use as Input"), "useAsInputButton",
                                            "Start the next image from this one",
                                            "Put this image in the input well: the next image starts from it "
                                            "(img2img), or edits it (Kontext)")
        self.copyImageButton = name_widget(QPushButton("Copy"), "copyImageButton", None,
                                           "Copy the image to the clipboard")
        self.exportButton = name_widget(QPushButton("Export…"), "exportButton", "Export the image",
                                        "Save a copy as PNG (with settings), JPEG or WebP")
        self.revealButton = name_widget(QPushButton(f"Show in {FILE_MANAGER}"), "revealButton", None,
                                        f"Show the saved PNG in {FILE_MANAGER}")
        self.maskViewButton = name_widget(QPushButton("Edit Mask"), "maskViewButton", None,
                                          "Show the mask editor (on) or the image (off)")
        self.maskViewButton.setCheckable(True)
        self.maskViewButton.setAutoDefault(False)
        self.maskViewButton.toggled.connect(self.show_mask)
        self.maskViewButton.hide()
        # Grid and Compare sit on the caption's line (the row of actions below is full): small
        # toggles that appear only when there is a grid or a pair to show.
        self.gridButton = name_widget(QToolButton(), "gridButton", "Show the batch's images in a grid",
                                      "All the images of the batch (or of the selected entries) in a grid; "
                                      "click one to see it alone")
        self.gridButton.setText("Grid")
        self.compareButton = name_widget(QToolButton(), "compareButton", "Compare two images",
                                         "The two selected history entries side by side, zoomed together, "
                                         "with the settings that differ")
        self.compareButton.setText("Compare")
        for button in (self.gridButton, self.compareButton):
            button.setCheckable(True)
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            button.hide()
        caption = QHBoxLayout()
        caption.addWidget(self.gridButton)
        caption.addWidget(self.compareButton)
        caption.addWidget(self.imageInfoLabel, 1)
        actions = FlowLayout()  # wraps in a narrow window rather than cutting buttons
        actions.addWidget(self.maskViewButton)
        actions.addWidget(self.reuseSeedButton)
        actions.addWidget(self.useAsInputButton)
        actions.addStretch(1)
        for button in (self.copyImageButton, self.exportButton, self.revealButton):
            actions.addWidget(button)

        self.progressBar = name_widget(QProgressBar(), "progressBar", "Generation progress")
        self.progressBar.setTextVisible(False)  # the label beside it carries the text (macOS draws none)
        self.progressLabel = ProgressLabel()
        self.progressLabel.setObjectName("progressLabel")
        # While a picked image stays in view during a run: the way back to the live previews.
        self.followLiveButton = name_widget(QPushButton("Show live preview"), "followLiveButton", None,
                                            "Follow the images being made again")
        self.followLiveButton.setAutoDefault(False)
        self.followLiveButton.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # a click leaves the focus where it is
        self.followLiveButton.hide()
        progress = QHBoxLayout()
        progress.addWidget(self.progressBar, 1)
        progress.addWidget(self.progressLabel)
        progress.addWidget(self.followLiveButton)
        self.reset_progress("Ready")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(8)
        layout.addWidget(self.messageBar)
        layout.addWidget(self.viewStack, 1)
        layout.addLayout(caption)
        layout.addLayout(actions)
        layout.addLayout(progress)

    def set_inpainting(self, on: bool, show_mask: bool = False) -> None:
        """While inpainting, "Edit Mask" switches between the mask editor and the image."""
        self.maskViewButton.setVisible(on)
        if show_mask and on:
            self.maskViewButton.setChecked(True)
        self.show_mask(on and self.maskViewButton.isChecked())

    def show_result(self) -> None:
        """The image (a new result, the live preview) in view; the mask is a click away."""
        self.maskViewButton.setChecked(False)

    def show_mask(self, on: bool) -> None:
        """The mask editor (on) or the image (off) in the middle."""
        self.viewStack.setCurrentWidget(self.maskPanel if on else self.previewView)

    def mask_shown(self) -> bool:
        return self.viewStack.currentWidget() is self.maskPanel

    # -- progress ---------------------------------------------------------------------------
    def reset_progress(self, text: str) -> None:
        self._batch = None
        self._end_phase()
        self.progressBar.setRange(0, 1)
        self.progressBar.setValue(0)
        self.progressLabel.setText(text)

    def start_run(self, steps: int, width: int = 0, height: int = 0) -> None:
        """A run begins: "Starting…" (encoding the prompt; at a new size, compiling) with a busy
        bar and a ticking clock until its first step."""
        self.reset_progress("Starting…")
        self._size, self._elapsed, self._step = (width, height), 0.0, (0, max(1, steps))
        self._begin_phase("starting")

    def show_decoding(self) -> None:
        """The steps are done and the VAE decodes (no steps to count): busy bar, ticking clock."""
        self._begin_phase("decoding")

    def show_next_chunk(self) -> None:
        """A batch's chunk is decoded and saved and more images are coming: until the next
        chunk's first step it is starting ("Image 3 of 4 · starting…"), not decoding."""
        if self._phase == "decoding" and self._batch is not None and self._batch[1] < self._batch[2]:
            self._begin_phase("starting", keep_clock=True)

    def show_cancelling(self) -> None:
        """Cancel pressed: the run stops at its next step, or (decoding) its image is discarded."""
        if self.is_decoding():
            self.show_finishing()
        else:
            self._end_phase()
            self.progressLabel.setText("Cancelling…")

    def show_finishing(self) -> None:
        """Cancelled while decoding: the decode cannot stop, and what it makes is thrown away."""
        self._begin_phase("finishing", keep_clock=True)

    def show_stopping(self) -> None:
        """Quitting: the run stops at its next step (a decode under way finishes first)."""
        self._begin_phase("stopping", keep_clock=True)

    def is_decoding(self) -> bool:
        return self._phase == "decoding"

    def note_decode(self, width: int, height: int, seconds: float | None) -> None:
        """A finished image's decode time, for the estimates of later runs at that size."""
        self.decode_times.note(width, height, seconds)

    def _begin_phase(self, phase: str, keep_clock: bool = False) -> None:
        if not (keep_clock and self._phase is not None):
            self._phase_clock = time.monotonic()
        self._phase = phase
        self.progressBar.setRange(0, 0)  # Qt's busy indicator
        self._ticker.start()
        self._show_phase()

    def _end_phase(self) -> None:
        self._phase = None
        self._ticker.stop()

    def _left(self, pace: float) -> float:
        """Seconds left at `pace` (seconds a step): this chunk's steps and decode, then whatever
        later chunks still need (steps and decodes)."""
        step, total = self._step
        if self._batch is None:
            images, chunk = 1, 1
        else:  # the images not decoded yet (counting the chunk under way), and the chunk size
            first, last, count, _, _ = self._batch
            images, chunk = count - first + 1, last - first + 1
        return pace * (total - step) + self.decode_times.left(*self._size, images, chunk, pace)

    def _images_text(self) -> str:
        """'Image 3 of 8' / 'Images 3–4 of 8': the part of a batch being made (a batch only)."""
        first, last, count, _, _ = self._batch
        what = f"Image {first}" if first == last else f"Images {first}–{last}"
        return f"{what} of {count}"

    def _show_phase(self) -> None:
        if self._phase is None:
            return
        in_phase = time.monotonic() - self._phase_clock
        elapsed = format_duration(self._elapsed + in_phase)
        if self._phase == "starting" and self._batch is not None:  # the next chunk of a batch
            _, last, count, _, _ = self._batch
            self.progressLabel.setText(f"Image {last + 1} of {count} · starting… · {elapsed}")
        elif self._phase == "starting":
            self.progressLabel.setText(f"Starting… · {elapsed}")
        elif self._phase == "finishing":
            self.progressLabel.setText(f"Finishing… the image will be discarded · {elapsed}")
        elif self._phase == "stopping":
            self.progressLabel.setText(f"Stopping… · {elapsed}")
        else:
            step = self._step[0]
            left = self._left(self._elapsed / step if step else 0.0) - in_phase
            text = f"Decoding… · {elapsed}" if self._batch is None else \
                f"{self._images_text()} · decoding… · {elapsed}"
            if left >= 0.5:  # an estimate already passed is not shown
                text += f" · about {format_duration(left)} left"
            self.progressLabel.setText(text)

    def show_batch_step(self, first: int, last: int, count: int, step: int, steps: int) -> None:
        """Which images of a batch the next show_step is about (they are made together)."""
        self._batch = (first, last, count, step, steps)

    def show_step(self, step: int, total: int, elapsed: float) -> None:
        """Step n/N (in a batch: which images, and their chunk's step) with elapsed time and a
        remaining-time estimate from the pace so far and the decodes to come; bar and times
        cover the whole run."""
        self._end_phase()
        self._elapsed, self._step = elapsed, (step, total)
        self.progressBar.setRange(0, max(1, total))
        self.progressBar.setValue(step)
        if self._batch is None:
            text = f"Step {step}/{total} · {format_duration(elapsed)}"
        else:
            _, _, _, chunk_step, chunk_steps = self._batch
            text = f"{self._images_text()} · step {chunk_step}/{chunk_steps} · {format_duration(elapsed)}"
        if step > 0:
            text += f" · about {format_duration(self._left(elapsed / step))} left"
        self.progressLabel.setText(text)

    def show_loading(self, message: str, fraction: float) -> str:
        """Model load/download progress; fraction < 0 means the engine cannot say how far."""
        self._end_phase()
        if fraction < 0:
            self.progressBar.setRange(0, 0)  # Qt's busy indicator
        else:
            self.progressBar.setRange(0, 1000)
            self.progressBar.setValue(int(fraction * 1000))
        text = f"{message} {fraction:.0%}" if fraction >= 0 else message
        self.progressLabel.setText(text)
        return text

    def show_done(self, text: str) -> None:
        self._end_phase()
        self.progressBar.setRange(0, max(1, self.progressBar.maximum()))
        self.progressBar.setValue(self.progressBar.maximum())
        self.progressLabel.setText(text)
