"""Conversions between PIL images (what the engine makes) and Qt images (what widgets show)."""

from __future__ import annotations

import io

from PIL import Image
from PySide6.QtGui import QImage

THUMBNAIL_SIZE = 192  # px on the long side: crisp at 96 pt on a Retina display


def pil_to_qimage(image: Image.Image) -> QImage:
    """A QImage that owns its pixels (safe to send across threads after the PIL image is gone).

    The pixels are copied into memory Qt allocated: wrapping a Python bytes object in a
    QImage ties its lifetime to Qt's, which PySide has been seen to get wrong at exit. Four
    bytes per pixel keep every row aligned, so one copy fills the whole image.
    """
    rgbx = image.convert("RGBX")
    qimage = QImage(rgbx.width, rgbx.height, QImage.Format.Format_RGBX8888)
    if qimage.isNull():  # zero-sized, or no memory for it
        return qimage
    assert qimage.bytesPerLine() == 4 * rgbx.width
    qimage.bits()[:] = rgbx.tobytes()
    return qimage


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
