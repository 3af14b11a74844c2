"""Getting a model onto the Mac: the first-run panel, the model manager, and the checks that keep
a 33 GB download from starting unasked.

The window owns one ModelSetup. Generate (and picking a known hub model) asks it first: a
known FLUX.1 repository that is not complete in the Hugging Face cache opens the manager
instead of loading, which would download it inside the model load with no way to pause.
A model file picked with Open Model File is checked here before it is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMenu, QPushButton, QVBoxLayout

from app.downloadcontroller import DownloadController
from app.machine import recommended_precision
from app.models import is_local
from app.modelmanager import CATALOG, ModelManagerDialog, download_phrase, progress_text
from app.widgets import name_widget
from mlx_flux.downloads import cache_state
from mlx_flux.errors import FluxError
from mlx_flux.file_kind import check_model_file
from mlx_flux.hub import ALIASES

if TYPE_CHECKING:
    from app.window import MainWindow


def hub_repo(source: str) -> str | None:
    """The known FLUX.1 repository `source` names (an alias too), else None."""
    repo = ALIASES.get(source, source)
    return repo if repo in CATALOG and not is_local(source) else None


def on_disk(repo: str) -> bool:
    return cache_state(repo).state == "complete"


class FirstRunPanel(QFrame):
    """Above the image while the chosen model is not on disk: its size, and the two ways on."""

    def __init__(self) -> None:
        super().__init__()
        name_widget(self, "firstRunPanel", "The model is not downloaded yet")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = name_widget(QLabel(), "firstRunLabel")
        self.label.setWordWrap(True)
        self.downloadButton = name_widget(QPushButton("Download…"), "firstRunDownloadButton", None,
                                          "Open the model manager to download it (pause and resume any time)")
        # A push button with a menu: its size makes room for the menu arrow (a tool button's
        # arrow was drawn over the end of the text).
        self.openButton = name_widget(QPushButton("Open Folder or File"), "firstRunOpenButton", None,
                                      "Use a FLUX.1 model folder or .safetensors file already on this Mac")
        buttons = QHBoxLayout()
        buttons.addWidget(self.downloadButton)
        buttons.addWidget(self.openButton)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addLayout(buttons)
        self.hide()


class ModelSetup(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.downloads = DownloadController(self)
        self.dialog: ModelManagerDialog | None = None
        self.panel = FirstRunPanel()
        window.imagePanel.layout().insertWidget(1, self.panel)  # under the message bar
        self.panel.downloadButton.clicked.connect(self.show_manager)
        self.downloads.finished.connect(self._downloaded)
        self.downloads.failed.connect(self._failed)
        self.downloads.progress.connect(self._progress)
        self.downloads.stopped.connect(lambda repo, reason: self.update_panel())

    def connect_menus(self) -> None:
        """After build_menus: the panel's open button offers the File menu's two open actions."""
        w = self.window
        menu = QMenu(self.panel.openButton)
        menu.addAction(w.openFolderAction)
        menu.addAction(w.openFileAction)
        self.panel.openButton.setMenu(menu)

    # -- the manager --------------------------------------------------------------------------
    def show_manager(self) -> ModelManagerDialog:
        if self.dialog is None:
            self.dialog = ModelManagerDialog(self.downloads, self._use, self.window)
        else:
            self.dialog.refresh()
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    def _use(self, repo: str) -> None:
        self.window.choose_model(repo, load=False)
        self.update_panel()

    # -- guards ---------------------------------------------------------------------------------
    def ready(self, source: str) -> bool:
        """Whether loading `source` needs no big download; else say so and offer the manager."""
        repo = hub_repo(source)
        if repo is None or on_disk(repo):
            return True
        entry = CATALOG[repo]
        listing = self.downloads.listings.get(repo)
        if self.downloads.is_running(repo):
            self.window.show_message(f"{entry.short} is still downloading: press Generate once it is done.", "info")
            self.show_manager()
            return False
        self.window.show_message(f"{entry.short} is not on this Mac yet: it is {download_phrase(entry, listing)}. "
                                 "Download it in the model manager, or open a model folder or file.", "info")
        self.update_panel()
        self.show_manager()
        return False

    def needs_download(self, source: str) -> bool:
        """A known hub model not complete on disk (its load would be a hidden download)."""
        repo = hub_repo(source)
        return repo is not None and not on_disk(repo)

    def check_file(self, path: str) -> bool:
        """A model file picked by the person is a FLUX.1 transformer; else one line, and False."""
        try:
            check_model_file(path)
        except FluxError as e:
            self.window.show_message(str(e))
            return False
        return True

    # -- first run ------------------------------------------------------------------------------
    def update_panel(self) -> None:
        """Show the first-run panel while the chosen model is a hub model not on disk."""
        source = self.window.controls.current_model()
        repo = hub_repo(source) if source else None
        if repo is None or on_disk(repo):
            self.panel.hide()
            return
        entry = CATALOG[repo]
        listing = self.downloads.listings.get(repo)
        state = cache_state(repo, listing)
        where = " (partly downloaded: resume it in the manager)" if state.state == "partial" else ""
        self.panel.label.setText(
            f"<b>{entry.short}</b> is not on this Mac yet{where}. It is {download_phrase(entry, listing)} "
            f"({entry.licence}); once downloaded it works offline.")
        self.panel.show()

    def apply_default_precision(self) -> None:
        """First run, no saved precision, the preference on Automatic: the one this Mac's memory allows."""
        settings = self.window.settings
        if settings.has_quantize or settings.default_precision != "auto":
            return
        self.window.controls.set_quantize(recommended_precision().bits)

    def _progress(self, repo: str, p) -> None:
        if self.panel.isVisible() and hub_repo(self.window.controls.current_model() or "") == repo:
            self.panel.label.setText(f"Downloading <b>{CATALOG[repo].short}</b>: {progress_text(p)}. "
                                     "Pause or cancel it in the model manager.")

    def _downloaded(self, repo: str, folder: str) -> None:
        if hub_repo(self.window.controls.current_model() or "") == repo:
            self.window.show_message(f"{CATALOG[repo].short} is downloaded: press Generate.", "info")
        self.update_panel()

    def _failed(self, repo: str, kind: str, message: str) -> None:
        if self.dialog is None or not self.dialog.isVisible():
            self.window.show_message(f"{message[:1].upper()}{message[1:]}. Open Models… to retry.")

    def shutdown(self) -> None:
        self.downloads.shutdown()
