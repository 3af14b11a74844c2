"""What the screenshot scripts share: an isolated app (its own data, settings and Hugging Face
cache in a temp folder), the window at a 13-inch Mac's size, waiting while Qt runs, and grabbing
exactly what the X server shows (ImageMagick's `import -window root`, cropped to the window).

The scripts run under Xvfb with a 1440x900 screen, the points a 13-inch MacBook Air shows:
    cd REPO && PYTHONPATH=.:tests QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1440x900x24" \
        python docs/screenshots/<script> <args>
from a fresh clone after `pip install -e ".[test]"` (they use the tests' tiny models and stand-ins),
with Xvfb (xvfb-run), ImageMagick (`import`, `mogrify`) and Qt's xcb libraries installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent
ROOT = OUT.parents[1]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# A window as a Mac user has it on a 13-inch screen (1440x900 points, less the menu bar and the
# window's title bar: about 1440x847 for the window's content): most of the screen, not all of it.
# (At 760 high the window grows itself to 790 once a queue shows, so every shot takes 800.)
WINDOW_SIZE = (1280, 800)


def isolate(hf_offline: bool = True) -> Path:
    """A temp folder for everything the app keeps (data, settings, launch.ini, an empty Hugging
    Face cache), set before Qt or huggingface_hub read the environment. Returns the folder."""
    tmp = Path(tempfile.mkdtemp(prefix="mlx-flux-shots-"))
    for var, sub in (("XDG_DATA_HOME", "xdg-data"), ("XDG_CONFIG_HOME", "xdg-config"),
                     ("XDG_CACHE_HOME", "xdg-cache"), ("HF_HOME", "hf-home"), ("HF_HUB_CACHE", "hf-cache")):
        (tmp / sub).mkdir()
        os.environ[var] = str(tmp / sub)
    os.environ.pop("HF_TOKEN", None)
    os.environ["HF_HUB_OFFLINE"] = "1" if hf_offline else "0"
    return tmp


def place(window) -> None:
    """The window at the top left of the screen, at WINDOW_SIZE, shown."""
    window.resize(*WINDOW_SIZE)
    window.move(0, 0)
    window.show()
    window.raise_()
    window.activateWindow()


def pump(seconds: float = 0.3) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def wait(condition, timeout: float = 600) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(getattr(condition, "__name__", "condition"))
        QApplication.processEvents()
        time.sleep(0.01)


def shoot(name: str, window=None, settle: float = 0.6) -> Path:
    """Grab the screen into docs/screenshots/NAME: the window's frame (and what lies over it,
    a dialog or a menu), or the whole screen without a window."""
    pump(settle)
    out = OUT / name
    crop = []
    if window is not None:
        g = window.frameGeometry()
        crop = ["-crop", f"{g.width()}x{g.height()}+{g.x()}+{g.y()}", "+repage"]
    subprocess.run(["import", "-window", "root", *crop, str(out)], check=True)
    print("wrote", out)
    return out


def generate(window, prompt: str) -> None:
    """Type-free Generate with `prompt`, then wait until everything queued is done."""
    window.promptEdit.setPlainText(prompt)
    done = []
    window.queue.finished.connect(done.append)
    window.generate()
    wait(lambda: done and not window.queue.is_busy())
    window.queue.finished.disconnect(done.append)


def landscape(path: Path, size=(1200, 800)) -> Path:
    """A sunset over hills and a lake, drawn here: something recognisable in the well and the history."""
    from PIL import Image, ImageDraw, ImageFilter

    w, h = size
    im = Image.new("RGB", size)
    draw = ImageDraw.Draw(im)
    for y in range(h):  # sky: deep blue to orange
        t = y / h
        draw.line([(0, y), (w, y)], fill=(int(40 + 215 * t), int(60 + 100 * t), int(140 - 60 * t)))
    draw.ellipse([w * 0.58, h * 0.30, w * 0.72, h * 0.51], fill=(255, 214, 120))
    draw.polygon([(0, h * 0.62), (w * 0.25, h * 0.42), (w * 0.5, h * 0.6), (w * 0.78, h * 0.38), (w, h * 0.58),
                  (w, h), (0, h)], fill=(52, 70, 60))
    draw.rectangle([0, h * 0.72, w, h], fill=(40, 70, 110))
    im = im.filter(ImageFilter.GaussianBlur(2))
    im.save(path)
    return path
