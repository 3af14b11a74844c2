"""Conversions between PIL images (what the engine makes) and Qt images (what widgets show)."""

from __future__ import annotations

import io

from PIL import Image
from PySide6.QtGui import QImage

THUMBNAIL_SIZE = 192  # px on the long side: crisp at 96 pt on a Retina display


def pil_to_qimage(image: Image.Image) -> QImage:
    """A QImage that owns its pixels (safe to send across threads after the PIL image is gone)."""
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    qimage = QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888)
    return qimage.copy()  # detach from `data`, which Python will free


def qimage_to_pil(qimage: QImage) -> Image.Image:
    rgb = qimage.convertToFormat(QImage.Format.Format_RGB888)
    stride = rgb.bytesPerLine()
    raw = bytes(rgb.constBits())[: stride * rgb.height()]
    return Image.frombuffer("RGB", (rgb.width(), rgb.height()), raw, "raw", "RGB", stride, 1).copy()


def thumbnail_png(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="PNG", optimize=True)
    return out.getvalue()
