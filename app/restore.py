"""Putting an earlier image's settings back in the controls (a history entry's, or those stored
in a PNG made by the app or the mlx-flux CLI that is dropped on the window or opened with the
app: Finder's Open With, an image argument).

`RestoreActions` is mixed into MainWindow: it works on the window's controls, model and shown image.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage

from app.imagepanel import Shown
from app.models import display_name, is_local
from app.params import GenerationParams, params_from_metadata
from app.worker import ModelChoice

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class RestoreActions:
    """Settings back into the controls; MainWindow supplies the controls, the model and the view."""

    def restore_params(self, params: GenerationParams, prompt: bool = True) -> None:
        """Put `params` in the controls, switching model (and precision) if they differ."""
        c = self.controls
        if params.model and (params.model != c.current_model() or params.quantize != c.quantize()):
            c.set_quantize(params.quantize)
            # The new model's ranges arrive when it has loaded; apply the values again then.
            # A hub model is not fetched just because an old image named it: it loads (and
            # downloads if need be) when the person presses Generate.
            self._pending_restore = params
            self.choose_model(params.model, keep_values=True, load=is_local(params.model))
            warm = self.model_info is not None and self.model_info.choice == ModelChoice(params.model, params.quantize)
            if warm or not is_local(params.model):
                self._pending_restore = None  # nothing loading now: the values below stand
        c.apply_params(params, prompt=prompt)

    # -- drag and drop of images made by the app (or the mlx-flux CLI) -----------------------
    def _dropped_image(self, mime: QMimeData) -> Path | None:
        for url in mime.urls() if mime.hasUrls() else []:
            if url.isLocalFile() and url.toLocalFile().lower().endswith(IMAGE_SUFFIXES):
                return Path(url.toLocalFile())
        return None

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        # Our own drag-out passing over the window is not a request to restore.
        if event.source() is None and self._dropped_image(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        path = self._dropped_image(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.restore_from_file(path)

    def restore_from_file(self, path: Path) -> bool:
        """Read the generation settings stored in `path` and put them in the controls."""
        try:
            from mlx_flux.metadata import read_metadata

            metadata = read_metadata(path)
        except Exception:
            log.exception("reading %s failed", path)
            metadata = None
        params = params_from_metadata(metadata) if metadata else None
        if params is None:
            self.show_message(f"“{path.name}” has no mlx-flux settings in it, so there is nothing to restore.",
                              "info")
            return False
        model = self._model_for_name(params.model)
        restored = params.with_(model=model, quantize=self.controls.quantize())
        self.restore_params(restored)
        image = QImage(str(path))
        if not image.isNull():
            self.show_image(Shown(image, restored, dict(metadata or {}), path))
            self._view_pinned = True
        self.messageBar.dismiss()
        self.statusBar().showMessage(f"Settings restored from {path.name}", 4000)
        return True

    def _model_for_name(self, name: str) -> str:
        """The loadable model behind a metadata `model` name; the current one if unknown."""
        current = self.controls.current_model()
        if not name:
            return current
        if self.model_info is not None and name in (self.model_info.name, self.model_info.choice.source):
            return self.model_info.choice.source
        combo = self.modelCombo
        for i in range(combo.count()):
            source = combo.itemData(i)
            if name in (source, combo.itemText(i)) or display_name(source) == display_name(name):
                return source
        return current
