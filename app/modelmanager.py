"""The model manager: the known FLUX.1 models, what each costs to download, what is on disk,
and the downloads themselves (progress, pause, resume, cancel, the licence sign-in).

One row per model of the variants table. Sizes come from the hub's file listing when online
(the files the engine needs, hub.FULL_PATTERNS) and from a recorded figure offline ("about").
The dialog is only a view: downloads belong to the window's DownloadController and go on
when it is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFrame, QGridLayout, QHBoxLayout, QInputDialog, QLabel,
                               QLineEdit, QMessageBox, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from app.downloadcontroller import DownloadController
from app.machine import free_disk, recommended_precision
from app.widgets import name_widget
from mlx_flux.downloads import Listing, Progress, cache_root, cache_state, format_bytes, format_duration
from mlx_flux.variants import VARIANTS

# The files hub.FULL_PATTERNS selects from an official FLUX.1 repository: the bf16 transformer
# (23.8 GB), T5-XXL (9.5 GB), CLIP-L and the VAE. Said as "about" when the hub cannot be asked.
APPROX_BYTES = 33_700_000_000
LICENCE_URL = "https://huggingface.co/{repo}"


@dataclass(frozen=True)
class CatalogEntry:
    variant: str
    repo: str
    title: str
    licence: str
    gated: bool  # the licence must be accepted on Hugging Face, and the download signed in
    about: int = APPROX_BYTES

    @property
    def short(self) -> str:
        return self.repo.split("/")[-1]


CATALOG = {e.repo: e for e in (
    CatalogEntry("schnell", VARIANTS["schnell"].repo, "FLUX.1 [schnell] · fast, 4 steps", "Apache-2.0", False),
    CatalogEntry("dev", VARIANTS["dev"].repo, "FLUX.1 [dev] · best quality, 28 steps",
                 "FLUX.1 [dev] Non-Commercial License", True),
    CatalogEntry("kontext", VARIANTS["kontext"].repo, "FLUX.1 Kontext [dev] · edits an image",
                 "FLUX.1 [dev] Non-Commercial License", True),
    CatalogEntry("fill", VARIANTS["fill"].repo, "FLUX.1 Fill [dev] · inpaints and outpaints",
                 "FLUX.1 [dev] Non-Commercial License", True),
)}


def size_text(entry: CatalogEntry, listing: Listing | None) -> str:
    return f"{format_bytes(listing.total)} download" if listing else f"about {format_bytes(entry.about)} download"


def download_phrase(entry: CatalogEntry, listing: Listing | None) -> str:
    """For a sentence: "a 33.7 GB download", or offline "a download of about 33.7 GB"."""
    return f"a {format_bytes(listing.total)} download" if listing else \
        f"a download of about {format_bytes(entry.about)}"


def progress_text(p: Progress) -> str:
    parts = [f"{format_bytes(p.done)} of {format_bytes(p.total)}"]
    if p.speed > 0:
        parts.append(f"{format_bytes(p.speed)}/s")
    if p.eta is not None:
        parts.append(f"{format_duration(p.eta)} left")
    return " · ".join(parts)


# Small `ask`-style functions, so tests can answer the modal questions.
def confirm(parent: QWidget, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def ask_token(parent: QWidget) -> str | None:
    text, ok = QInputDialog.getText(parent, "Hugging Face Access Token",
                                    "Paste a read token from huggingface.co/settings/tokens:",
                                    QLineEdit.EchoMode.Password)
    return text.strip() if ok and text.strip() else None


def open_url(url: str) -> None:
    QDesktopServices.openUrl(QUrl(url))


class ModelRow(QFrame):
    """One model: its name, licence, size, what is on disk, and its download controls."""

    useRequested = Signal(str)

    def __init__(self, entry: CatalogEntry, downloads: DownloadController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entry, self.downloads = entry, downloads
        self.listing: Listing | None = downloads.listings.get(entry.repo)
        self.error: tuple[str, str] | None = None  # (kind, message) of the last failure
        self.pausing = False  # Pause pressed, the transfer not stopped yet
        v = entry.variant
        name_widget(self, f"{v}ModelRow", entry.title)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        title = QLabel(f"<b>{entry.title}</b>")
        self.licenceLabel = name_widget(QLabel(f"Licence: {entry.licence}" + (" · gated: accept it on Hugging Face"
                                                                              if entry.gated else "")),
                                        f"{v}LicenceLabel")
        self.sizeLabel = name_widget(QLabel(), f"{v}SizeLabel", "Download size")
        self.stateLabel = name_widget(QLabel(), f"{v}StateLabel", "What is on disk")
        self.progressBar = name_widget(QProgressBar(), f"{v}ProgressBar", "Download progress")
        self.progressBar.setRange(0, 1000)
        self.progressLabel = name_widget(QLabel(), f"{v}ProgressLabel", "Bytes, speed and time left")
        self.errorLabel = name_widget(QLabel(), f"{v}ErrorLabel", "Why the download stopped")
        self.errorLabel.setWordWrap(True)
        self.downloadButton = name_widget(QPushButton("Download"), f"{v}DownloadButton", None,
                                          f"Download {entry.short} into the Hugging Face cache")
        self.pauseButton = name_widget(QPushButton("Pause"), f"{v}PauseButton", None,
                                       "Stop for now; the bytes so far are kept and the download resumes later")
        self.cancelButton = name_widget(QPushButton("Cancel"), f"{v}CancelButton", None,
                                        "Stop and remove the partial download")
        self.useButton = name_widget(QPushButton("Use"), f"{v}UseButton", None, f"Make {entry.short} the model")
        # The licence sign-in: shown when the hub answers that the model is gated.
        self.gatePanel = name_widget(QFrame(), f"{v}GatePanel")
        self.gateLabel = name_widget(QLabel(f"{entry.short} needs you to accept its licence on Hugging Face, "
                                            "then sign in with an access token."), f"{v}GateLabel")
        self.gateLabel.setWordWrap(True)
        self.openLicenceButton = name_widget(QPushButton("Open Licence Page"), f"{v}OpenLicenceButton", None,
                                             "Accept the licence on huggingface.co in your browser")
        self.pasteTokenButton = name_widget(QPushButton("Paste Token…"), f"{v}PasteTokenButton", None,
                                            "Sign in with a Hugging Face access token (stored as huggingface_hub does)")
        gate = QHBoxLayout(self.gatePanel)
        gate.setContentsMargins(0, 0, 0, 0)
        gate.addWidget(self.gateLabel, 1)
        gate.addWidget(self.openLicenceButton)
        gate.addWidget(self.pasteTokenButton)

        buttons = QHBoxLayout()
        for b in (self.downloadButton, self.pauseButton, self.cancelButton, self.useButton):
            buttons.addWidget(b)
        buttons.addStretch(1)
        grid = QGridLayout(self)
        grid.addWidget(title, 0, 0)
        grid.addWidget(self.sizeLabel, 0, 1, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.licenceLabel, 1, 0)
        grid.addWidget(self.stateLabel, 1, 1, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.progressBar, 2, 0, 1, 2)
        grid.addWidget(self.progressLabel, 3, 0, 1, 2)
        grid.addWidget(self.errorLabel, 4, 0, 1, 2)
        grid.addWidget(self.gatePanel, 5, 0, 1, 2)
        grid.addLayout(buttons, 6, 0, 1, 2)

        self.downloadButton.clicked.connect(self.start)
        self.pauseButton.clicked.connect(self.pause)
        self.cancelButton.clicked.connect(self.cancel)
        self.useButton.clicked.connect(lambda: self.useRequested.emit(entry.repo))
        self.openLicenceButton.clicked.connect(lambda: open_url(LICENCE_URL.format(repo=entry.repo)))
        self.pasteTokenButton.clicked.connect(self.paste_token)
        self.refresh()

    # -- actions ------------------------------------------------------------------------------
    def start(self) -> None:
        self.error = None
        self.downloads.start(self.entry.repo)
        self.refresh()

    def pause(self) -> None:
        self.downloads.pause(self.entry.repo)
        self.pausing = True  # until the transfer stops, at its next bytes
        self.refresh()

    def cancel(self) -> None:
        state = cache_state(self.entry.repo, self.listing)
        done = format_bytes(state.bytes) if state.bytes else "nothing yet"
        if confirm(self, "Cancel Download", f"Stop downloading {self.entry.short} and remove the partial "
                                            f"download ({done})?"):
            self.downloads.cancel(self.entry.repo)
            self.refresh()

    def paste_token(self) -> None:
        token = ask_token(self)
        if token:
            self.gateLabel.setText("Checking the token with Hugging Face…")
            self.downloads.verify_token(token)

    # -- what the controller says -------------------------------------------------------------
    def on_listed(self, listing: Listing) -> None:
        self.listing = listing
        self.refresh()

    def on_progress(self, p: Progress) -> None:
        self.progressBar.setValue(int(1000 * p.done / p.total) if p.total else 0)
        self.progressLabel.setText(progress_text(p))
        self.stateLabel.setText("Pausing…" if self.pausing else "Downloading…")

    def on_failed(self, kind: str, message: str) -> None:
        self.error = (kind, message)
        self.refresh()

    def on_token(self, ok: bool, text: str) -> None:
        if ok:
            self.gateLabel.setText(f"Signed in as {text}. Accept the licence on its page if you have not, "
                                   "then press Retry.")
        else:
            self.gateLabel.setText(f"The token was not accepted: {text}.")

    def refresh(self) -> None:
        repo = self.entry.repo
        running = self.downloads.is_running(repo)
        state = cache_state(repo, self.listing)
        self.sizeLabel.setText(size_text(self.entry, self.listing))
        if running:
            self.stateLabel.setText("Pausing…" if self.pausing else "Downloading…")
        elif state.state == "complete":
            self.stateLabel.setText("On disk · complete")
        elif state.state == "partial":
            self.stateLabel.setText(f"Partial · {format_bytes(state.bytes)} on disk")
        else:
            self.stateLabel.setText("Not downloaded")
        complete = state.state == "complete" and not running
        self.downloadButton.setVisible(not running and not complete)
        self.downloadButton.setText("Retry" if self.error else "Resume" if state.state == "partial" else "Download")
        self.pausing = self.pausing and running
        self.pauseButton.setVisible(running)
        self.pauseButton.setEnabled(not self.pausing)
        self.cancelButton.setVisible(running or state.state == "partial")
        self.useButton.setVisible(complete)
        self.progressBar.setVisible(running or state.state == "partial")
        total = self.listing.total if self.listing else self.entry.about
        if not running and state.state == "partial":
            self.progressBar.setValue(min(1000, int(1000 * state.bytes / total)))
            self.progressLabel.setText(f"Paused at {format_bytes(state.bytes)} of about {format_bytes(total)}")
        self.progressLabel.setVisible(running or state.state == "partial")
        kind, message = self.error or ("", "")
        if kind == "offline":
            message = f"Offline: {message}. Connect to the internet and press Retry."
        self.errorLabel.setText(message)
        self.errorLabel.setVisible(bool(message) and kind != "gated")
        self.gatePanel.setVisible(kind == "gated")


class ModelManagerDialog(QDialog):
    """Models… in the File menu: every known model, with its download."""

    def __init__(self, downloads: DownloadController, use: Callable[[str], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelManagerDialog")
        self.setAccessibleName("modelManagerDialog")
        self.setWindowTitle("Models")
        self.downloads = downloads
        precision = recommended_precision()
        self.precisionLabel = name_widget(QLabel(f"Precision this Mac can run · {precision.reason}"), "precisionLabel",
                                          "The weight precision this Mac's memory allows")
        self.precisionLabel.setWordWrap(True)
        self.diskLabel = name_widget(QLabel(), "diskLabel", "Free space where models are stored")
        self.rows: dict[str, ModelRow] = {}
        layout = QVBoxLayout(self)
        layout.addWidget(self.precisionLabel)
        layout.addWidget(self.diskLabel)
        for repo, entry in CATALOG.items():
            row = self.rows[repo] = ModelRow(entry, downloads, self)
            row.useRequested.connect(use)
            row.useRequested.connect(lambda _repo: self.close())
            layout.addWidget(row)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.close)
        layout.addWidget(close)

        downloads.listed.connect(self._listed)
        downloads.listFailed.connect(self._list_failed)
        downloads.progress.connect(self._progress)
        downloads.finished.connect(self._changed)
        downloads.stopped.connect(self._changed)
        downloads.failed.connect(self._failed)
        downloads.tokenChecked.connect(self._token)
        self.refresh()

    def refresh(self, ask_hub: bool = True) -> None:
        """Sizes from the hub (in the background), what is on disk, free space."""
        root = cache_root()
        free = free_disk(root)
        self.diskLabel.setText(f"Free on the disk of the model cache ({_home_relative(root)}): "
                               f"{format_bytes(free) if free is not None else 'unknown'}")
        for repo, row in self.rows.items():
            row.refresh()
            if ask_hub and repo not in self.downloads.listings:
                self.downloads.list(repo)

    def _listed(self, repo: str, listing: Listing) -> None:
        if repo in self.rows:
            self.rows[repo].on_listed(listing)

    def _list_failed(self, repo: str, kind: str, message: str) -> None:
        if repo in self.rows and kind == "gated":
            self.rows[repo].on_failed(kind, message)

    def _progress(self, repo: str, p: Progress) -> None:
        if repo in self.rows:
            self.rows[repo].on_progress(p)

    def _changed(self, repo: str, _detail: str) -> None:
        self.refresh(ask_hub=False)  # every row (this one included) and the free space

    def _failed(self, repo: str, kind: str, message: str) -> None:
        if repo in self.rows:
            self.rows[repo].on_failed(kind, message)

    def _token(self, ok: bool, text: str) -> None:
        for row in self.rows.values():
            if row.gatePanel.isVisible() or row.error and row.error[0] == "gated":
                row.on_token(ok, text)


def _home_relative(path: Path) -> str:
    try:
        return "~/" + str(path.resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)
