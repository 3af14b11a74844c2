"""What the window does with an inpainting mask: show the mask editor in place of the image while
the input is inpainted (a Fill model, or "Inpaint" picked on the input image), put the painted
mask or the canvas margins into the next image's settings, and bring them back on a restore.

The mask travels like an input image: the app's grey copy (white: repaint) in
`<data dir>/inputs/<fingerprint>.png`, named by the engine's content hash, which the request
records as its `mask`; `GenerationParams.mask` points the worker at the copy.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtGui import QImage

from mlx_flux.images import load_image
from mlx_flux.request import GenerationRequest, ImageRef

from app.inputs import _write_once, copy_path, find, short_hash
from app.params import GenerationParams, InputImageChoice, fit_size

if TYPE_CHECKING:
    from app.window import MainWindow

log = logging.getLogger(__name__)


class MaskController:
    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.panel = window.inputPanel
        self.maskPanel = window.maskPanel
        self.canvas = window.maskCanvas
        self.folder = window.data_dir.inputs
        self._fingerprint: str | None = None  # the input the canvas shows
        self._on = False
        self.panel.changed.connect(self.refresh)
        self.panel.inpaintToggled.connect(self.refresh)

    def refresh(self) -> None:
        """The editor shows while the input is inpainted, on a fresh mask for a new input."""
        on = self.panel.inpaints()
        stored = self.panel.stored()
        fresh = on and not self._on
        self._on = on
        if stored is None:
            self._fingerprint = None
        elif on and stored.fingerprint != self._fingerprint:
            self._fingerprint = stored.fingerprint
            self.canvas.set_image(QImage(str(stored.path)))  # the app's copy: a PNG, read in a moment
            self.maskPanel.set_expand(None)
            fresh = True
        self.window.imagePanel.set_inpainting(on, show_mask=fresh)

    # -- the next image -------------------------------------------------------------------------
    def apply(self, params: GenerationParams) -> GenerationParams | None:
        """`params` with the mask (inpaint) or the margins (outpaint) when inpainting; None (with a
        message) when a Fill model has nothing to repaint."""
        if not self.panel.inpaints():
            return params
        stored = self.panel.stored()
        expand = self.maskPanel.expand()
        if expand is not None:
            l, t, r, b = expand
            width, height = fit_size(stored.width + l + r, stored.height + t + b)
            request = params.request.with_(expand=expand, mask=None, strength=None, width=width, height=height)
            return replace(params, request=request, expand=expand, mask=None)
        mask = self.canvas.mask_pil()
        if mask is None or mask.getbbox() is None:
            if self.panel.fills():
                self.window.show_message("Paint over what should be repainted, or expand the canvas.", "info")
                return None
            return params  # nothing painted: img2img as before
        try:
            choice, ref = self.store(mask)
        except OSError as exc:
            self.window.show_message(f"Could not save the mask: {exc}", "warning")
            return None
        request = params.request.with_(mask=ref, expand=None, strength=None)
        return replace(params, request=request, mask=choice, expand=None)

    def store(self, mask) -> tuple[InputImageChoice, ImageRef]:
        """Keep the app's grey copy of `mask` (never overwritten: it is named by its hash)."""
        fingerprint = load_image(mask).ref.fingerprint
        path = copy_path(self.folder, fingerprint)
        if not path.is_file():
            _write_once(mask.convert("L"), path)
        return InputImageChoice(str(path)), ImageRef(fingerprint, *mask.size)

    # -- restoring ------------------------------------------------------------------------------
    def restore(self, request: GenerationRequest) -> tuple[InputImageChoice | None, tuple | None]:
        """Put `request`'s mask (from the app's copy) or margins back; returns them for a remake.
        Call after the input image is back in the well."""
        if request.mask is None and request.expand is None:
            if self.panel.stored() is not None and not self.panel.fills():
                self.panel.inpaintButton.setChecked(False)
            return None, None
        if self.panel.stored() is None:
            return None, None
        self.panel.inpaintButton.setChecked(True)
        self._fingerprint = None
        self.refresh()
        if request.expand is not None:
            self.maskPanel.set_expand(tuple(request.expand))
            return None, tuple(request.expand)
        found = find(self.folder, request.mask.fingerprint)
        if found is None:
            self.window.show_message(
                f"The mask of these settings ({short_hash(request.mask.fingerprint)}) is not in the app's data "
                "folder; the other settings are restored.", "warning")
            return None, None
        self.canvas.set_image(QImage(str(self.panel.stored().path)), QImage(str(found.path)))
        return found.choice, None
