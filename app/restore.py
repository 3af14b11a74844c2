"""Putting an earlier image's settings back in the controls (a history entry's, or those stored
in a PNG made by the app or the mlx-flux CLI that is dropped on the window or opened with the
app: Finder's Open With, an image argument).

Restoring is always an explicit act (Use Settings, Re-run, a drop, Open With), and even then a
different model or precision is asked for first (app/modelswitch.py): it can be a reload of
tens of GB. `RestoreController` is owned by the main window; it works on the window's
controls, model and shown image.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QImage

from app import modelswitch
from app.imagepanel import Shown
from app.models import display_name, is_local
from app.params import GenerationParams, ModelChoice

if TYPE_CHECKING:
    from app.window import MainWindow

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class RestoreController:
    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.controls = window.controls

    def current_choice(self) -> ModelChoice:
        return ModelChoice(self.controls.current_model(), self.controls.quantize())

    def differs(self, choice: ModelChoice) -> bool:
        """Whether restoring `choice` would change the model or its precision."""
        return bool(choice.source) and choice != self.current_choice()

    def use_settings(self, params: GenerationParams, prompt: bool = True) -> GenerationParams:
        """Restore all of `params`; a different model or precision only if the person says so.

        Returns the params to make the image with now: on the image's model, or with the rest
        of its settings on the current one."""
        switch = self.differs(params.choice) and modelswitch.ask_model_switch(
            self.window, params.choice, self.current_choice())
        restored = self.restore_params(params, prompt=prompt, switch_model=switch)
        if switch or not self.differs(params.choice):
            return restored
        # Kept the current model: its own guidance (None for a distilled model) goes with it.
        guidance = self.controls.params().guidance
        return replace(restored, choice=self.current_choice(), request=restored.request.with_(guidance=guidance))

    def restore_params(self, params: GenerationParams, prompt: bool = True,
                       switch_model: bool = True) -> GenerationParams:
        """Put `params` in the controls, switching model (and precision) if they differ and
        `switch_model`, its LoRAs in the LoRA list and its input image in the well (both found
        again by content hash). Returns the params to remake the image with: the LoRAs and the
        input that were found, as files."""
        w, c, choice = self.window, self.controls, params.choice
        if switch_model and self.differs(choice):
            c.set_quantize(choice.quantize)
            # The new model's ranges arrive when it has loaded; apply the values again then.
            # A hub model is not fetched just because an old image named it: it loads (and
            # downloads if need be) when the person presses Generate.
            w.view.pending_restore = params
            w.choose_model(choice.source, keep_values=True, load=is_local(choice.source))
            warm = w.model_info is not None and w.model_info.choice == choice
            if warm or not is_local(choice.source):
                w.view.pending_restore = None  # nothing loading now: the values below stand
        c.apply_request(params.request, prompt=prompt)
        loras = w.lora_controller.restore(params.request.loras)
        started_from = w.input_controller.restore(params.request)
        mask, expand = w.mask_controller.restore(params.request)
        return replace(params, request=params.request.with_(loras=()), loras=loras, input=started_from,
                       mask=mask, expand=expand)

    # -- drag and drop of images made by the app (or the mlx-flux CLI) -----------------------
    @staticmethod
    def dropped_image(mime: QMimeData) -> Path | None:
        for url in mime.urls() if mime.hasUrls() else []:
            if url.isLocalFile() and url.toLocalFile().lower().endswith(IMAGE_SUFFIXES):
                return Path(url.toLocalFile())
        return None

    def restore_from_file(self, path: Path) -> bool:
        """Read the generation settings stored in `path` and put them in the controls."""
        w = self.window
        try:
            from mlx_flux.metadata import read_metadata
            from mlx_flux.request import GenerationRequest

            meta = read_metadata(path)
            request = GenerationRequest.from_metadata(meta) if meta is not None else None
        except Exception:
            log.exception("reading %s failed", path)
            meta = request = None
        if request is None:
            w.show_message(f"“{path.name}” has no mlx-flux settings in it, so there is nothing to restore. "
                           "To start from it, drop it on the input image well.", "info")
            return False
        # The request names the model that made it (a display name); load the one we have for it.
        # Its precision too, where the file records it (an 8-bit image asks for 8-bit, not full).
        quantize = request.quantize if precision_recorded(meta) else self.controls.quantize()
        restored = GenerationParams(ModelChoice(self._model_for_name(request.model or ""), quantize), request)
        w.messageBar.dismiss()  # before restoring: a LoRA not found says so
        self.use_settings(restored)
        image = QImage(str(path))
        if not image.isNull():
            w.show_image(Shown(image, restored, path))
            w.set_pinned(True)
        w.statusBar().showMessage(f"Settings restored from {path.name}", 4000)
        return True

    def _model_for_name(self, name: str) -> str:
        """The loadable model behind a metadata `model` name; the current one if unknown."""
        current = self.controls.current_model()
        info = self.window.model_info
        if not name:
            return current
        if info is not None and name in (info.name, info.choice.source):
            return info.choice.source
        combo = self.controls.modelCombo
        for i in range(combo.count()):
            source = combo.itemData(i)
            if name in (source, combo.itemText(i)) or display_name(source) == display_name(name):
                return source
        return current


def precision_recorded(meta: dict) -> bool:
    """Whether an image's settings say its precision: versioned metadata (schema 1 on) always
    does, where no `quantize` means full precision; older files and other tools' do not."""
    schema = meta.get("schema")
    return "quantize" in meta or (isinstance(schema, int) and not isinstance(schema, bool) and schema >= 1)
