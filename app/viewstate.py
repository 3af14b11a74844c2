"""What the main window's image view is doing, in one place (instead of loose flags on the window)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QImage

from app.imagepanel import Shown
from app.params import GenerationParams


@dataclass
class ViewState:
    # The person picked an image to look at: runs under way leave it in view (until Generate or
    # "Show live preview"). Change it through MainWindow.set_pinned, which updates the button.
    pinned: bool = False
    # What "Show live preview" goes back to: the newest preview of the chunk under way, or
    # between two chunks of a batch the run's newest finished image.
    latest_preview: QImage | None = None
    latest_finished: Shown | None = None
    # Settings of a restored image whose model is loading: applied again once it is ready.
    pending_restore: GenerationParams | None = None
    # Selecting a history row in code (after a refresh) must not restore it.
    selecting_quietly: bool = False
