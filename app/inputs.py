"""Input images on the app's side: its own copy of each one, found again by content hash.

Every image a person starts from (dropped, opened, or an earlier result used as input) is
copied once into `<data dir>/inputs/<fingerprint>.png`, named by the engine's content hash
(`mlx_flux.images.load_image(...).ref.fingerprint`), so a history entry or a PNG's metadata,
which record only that hash, still restore their input after the original file is gone. The
copy is written atomically and never overwritten; a small preview goes to `inputs/thumbs/`.

No widgets here, and no MLX: `store` runs on a pool thread (reading, hashing and writing a
large photo takes a moment), everything else on the GUI thread.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QImageReader

from mlx_flux.images import load_image
from mlx_flux.request import EDIT, IMAGE_TO_IMAGE, GenerationRequest

from app.imaging import pil_to_qimage
from app.params import InputImageChoice

log = logging.getLogger(__name__)

PREVIEW_SIZE = 256  # px on the long side: the well and the history badge draw from this
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
FILE_FILTER = "Images (" + " ".join(f"*{s}" for s in SUFFIXES) + ")"


@dataclass(frozen=True)
class StoredInput:
    """An input image the app holds: its copy, content hash, own size and the name it came with.

    Has a `size` like the engine's `InputImage`, so `images.own_size` and `images.kontext_size`
    take it as they are."""

    choice: InputImageChoice
    fingerprint: str
    width: int
    height: int
    name: str = ""  # the file it came from, for the caption ("" when unknown: a restore)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def path(self) -> Path:
        return Path(self.choice.path)


def copy_path(folder: Path, fingerprint: str) -> Path:
    return folder / f"{fingerprint}.png"


def preview_path(folder: Path, fingerprint: str) -> Path:
    return folder / "thumbs" / f"{fingerprint}.png"


def store(source: str | Path | Image.Image, folder: Path, name: str = "") -> tuple[StoredInput, QImage]:
    """Read `source` (a file or PIL image) as the engine will, keep the app's copy of it, and
    return it with a preview. Raises the engine's InputError (one line) when it cannot be read
    or is too large, OSError when the copy cannot be written."""
    picture = load_image(source)
    fingerprint = picture.ref.fingerprint
    path = copy_path(folder, fingerprint)
    if not path.is_file():
        _write_once(picture.pixels, path)
    preview = picture.pixels.copy()
    preview.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.LANCZOS)
    thumb = preview_path(folder, fingerprint)
    if not thumb.is_file():
        try:
            _write_once(preview, thumb)
        except OSError:  # the preview is a nicety; the copy is what matters
            log.warning("could not write %s", thumb, exc_info=True)
    if not name and not isinstance(source, Image.Image):
        name = Path(source).name
    width, height = picture.size
    return StoredInput(InputImageChoice(str(path)), fingerprint, width, height, name), pil_to_qimage(preview)


def find(folder: Path, fingerprint: str) -> StoredInput | None:
    """The app's copy of the input with this hash, if it is still there (reads only its header)."""
    path = copy_path(folder, fingerprint)
    size = QImageReader(str(path)).size() if path.is_file() else None
    if size is None or not size.isValid():
        return None
    return StoredInput(InputImageChoice(str(path)), fingerprint, size.width(), size.height())


def preview(stored: StoredInput, folder: Path) -> QImage:
    """A small image of `stored`: its saved preview, else the copy scaled down."""
    thumb = preview_path(folder, stored.fingerprint)
    image = QImage(str(thumb)) if thumb.is_file() else QImage()
    if image.isNull():
        reader = QImageReader(str(stored.path))
        size = reader.size()
        if size.isValid():
            reader.setScaledSize(size.scaled(PREVIEW_SIZE, PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
    return image


def preview_image(folder: Path, fingerprint: str) -> QImage:
    """The saved preview of the input with this hash (a null image when there is none)."""
    thumb = preview_path(folder, fingerprint)
    return QImage(str(thumb)) if thumb.is_file() else QImage()


def _write_once(image: Image.Image, path: Path) -> None:
    """Write `image` as PNG at `path` atomically: a temporary file in the same folder, then a
    hard link (which fails rather than replace a file already there), so a reader never sees a
    half-written file and an existing copy is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", compress_level=3)  # fast: inputs can be large photos
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # the same content (it has the same hash), written meanwhile
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def short_hash(fingerprint: str) -> str:
    return f"{fingerprint[:6]}…"


def input_text(request: GenerationRequest) -> str | None:
    """What an image started from, for captions: 'img2img 0.6 from ab12cd…', 'edit of ab12cd…'."""
    ref = request.image
    if ref is None:
        return None
    if request.mode == EDIT:
        return f"edit of {short_hash(ref.fingerprint)}"
    strength = f" {request.strength:g}" if request.strength is not None else ""
    if request.mode in (IMAGE_TO_IMAGE, None):
        return f"img2img{strength} from {short_hash(ref.fingerprint)}"
    return None


class _Signals(QObject):
    done = Signal(int, object, object, str)  # token, StoredInput (or None), preview QImage, error


class InputLoader(QObject):
    """Runs `store` on a pool thread; `loaded` / `failed` arrive on the GUI thread. Only the
    latest request counts: an earlier one still running is ignored when it finishes."""

    loaded = Signal(object, QImage)  # StoredInput, preview
    failed = Signal(str)  # one-line reason

    def __init__(self, folder: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.folder = folder
        self._token = 0
        self._busy = False
        self._signals = _Signals(self)
        self._signals.done.connect(self._on_done)

    def is_busy(self) -> bool:
        return self._busy

    def start(self, source: str | Path | Image.Image, name: str = "") -> None:
        self._token += 1
        self._busy = True
        token, folder, signals = self._token, self.folder, self._signals

        def work() -> None:
            try:
                stored, image = store(source, folder, name)
            except Exception as exc:  # InputError: one line already; OSError: the copy failed
                from app.errors import describe_error

                signals.done.emit(token, None, QImage(), describe_error(exc))
            else:
                signals.done.emit(token, stored, image, "")

        QThreadPool.globalInstance().start(_Runnable(work))

    def cancel(self) -> None:
        """Forget the request in flight (its result is dropped)."""
        self._token += 1
        self._busy = False

    def _on_done(self, token: int, stored: StoredInput | None, image: QImage, error: str) -> None:
        if token != self._token:
            return
        self._busy = False
        if stored is None:
            self.failed.emit(error)
        else:
            self.loaded.emit(stored, image)


class _Runnable(QRunnable):
    def __init__(self, work) -> None:
        super().__init__()
        self._work = work

    def run(self) -> None:
        self._work()
