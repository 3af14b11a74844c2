"""The middle of the window: messages, the image itself, what it is, what to do with it, progress."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QHBoxLayout, QLabel, QProgressBar, QPushButton, QStackedWidget, QToolButton, QVBoxLayout, QWidget,
)

from app.batchgrid import BatchGrid
from app.compare import CompareView
from app.controls import name_widget
from app.imageview import ImageView
from app.maskpanel import MaskPanel
from app.messagebar import MessageBar
from app.params import GenerationParams

FILE_MANAGER = {"darwin": "Finder", "win32": "Explorer"}.get(sys.platform, "File Manager")
# The longest progress texts of a typical run (see show_step and format_duration), for the label's width.
PROGRESS_SAMPLES = (
    "Step 28/28 · 12 min 00 s · about 12 min 00 s left",
    "Images 10–12 of 12 · step 28/28 · 12 min 00 s · about 12 min 00 s left",
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
        actions = QHBoxLayout()
        actions.addWidget(self.maskViewButton)
        actions.addWidget(self.reuseSeedButton)
        actions.addWidget(self.useAsInputButton)
        actions.addStretch(1)
        for button in (self.copyImageButton, self.exportButton, self.revealButton):
            actions.addWidget(button)

        self.progressBar = name_widget(QProgressBar(), "progressBar", "Generation progress")
        self.progressBar.setTextVisible(False)  # the label beside it carries the text (macOS draws none)
        self.progressLabel = QLabel()
        self.progressLabel.setObjectName("progressLabel")
        # Wide enough for the longest text of a typical run, one image or a batch, so that the
        # bar keeps its width while the text changes from step to step.
        metrics = self.progressLabel.fontMetrics()
        self.progressLabel.setMinimumWidth(max(metrics.horizontalAdvance(text) for text in PROGRESS_SAMPLES))
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
        self.progressBar.setRange(0, 1)
        self.progressBar.setValue(0)
        self.progressLabel.setText(text)

    def start_run(self, steps: int) -> None:
        self.reset_progress("Starting…")
        self.progressBar.setRange(0, max(1, steps))

    def show_batch_step(self, first: int, last: int, count: int, step: int, steps: int) -> None:
        """Which images of a batch the next show_step is about (they are made together)."""
        self._batch = (first, last, count, step, steps)

    def show_step(self, step: int, total: int, elapsed: float) -> None:
        """Step n/N (in a batch: which images, and their chunk's step) with elapsed time and a
        remaining-time estimate from the pace so far; bar and times cover the whole run."""
        self.progressBar.setRange(0, max(1, total))
        self.progressBar.setValue(step)
        if self._batch is None:
            text = f"Step {step}/{total} · {format_duration(elapsed)}"
        else:
            first, last, count, chunk_step, chunk_steps = self._batch
            images = f"Image {first}" if first == last else f"Images {first}–{last}"
            text = f"{images} of {count} · step {chunk_step}/{chunk_steps} · {format_duration(elapsed)}"
        if 0 < step < total:
            text += f" · about {format_duration(elapsed / step * (total - step))} left"
        self.progressLabel.setText(text)

    def show_loading(self, message: str, fraction: float) -> str:
        """Model load/download progress; fraction < 0 means the engine cannot say how far."""
        if fraction < 0:
            self.progressBar.setRange(0, 0)  # Qt's busy indicator
        else:
            self.progressBar.setRange(0, 1000)
            self.progressBar.setValue(int(fraction * 1000))
        text = f"{message} {fraction:.0%}" if fraction >= 0 else message
        self.progressLabel.setText(text)
        return text

    def show_done(self, text: str) -> None:
        self.progressBar.setValue(self.progressBar.maximum())
        self.progressLabel.setText(text)
