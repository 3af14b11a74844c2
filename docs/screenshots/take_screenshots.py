"""Takes the README screenshots from the running app on an X server (e.g. `Xvfb :99`).

    python tests/tiny_models.py /tmp/tiny-schnell --variant schnell
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/take_screenshots.py /tmp/tiny-schnell

A tiny random model paints noise; the point is the window around it. Screens are grabbed
with ImageMagick's `import -window root`, i.e. exactly what the X server shows.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.main import create_app  # noqa: E402

OUT = Path(__file__).resolve().parent
PROMPTS = [
    "A lighthouse on a cliff at dusk, warm light, volumetric fog, 35mm photo",
    "Macro photo of a dew-covered spider web at sunrise",
    "Isometric cozy reading nook, soft pastel colors, 3D render",
    "A red fox in fresh snow, telephoto, shallow depth of field",
]


def pump(app: QApplication, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def wait(app: QApplication, condition, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError
        app.processEvents()
        time.sleep(0.01)


def shoot(app: QApplication, name: str) -> None:
    pump(app, 0.5)
    subprocess.run(["import", "-window", "root", str(OUT / name)], check=True)
    print("wrote", OUT / name)


def generate(app, window, prompt: str) -> None:
    window.promptEdit.setPlainText(prompt)
    done = []
    window.queue.finished.connect(done.append)
    window.generate()
    wait(app, lambda: done and not window.queue.is_busy())
    window.queue.finished.disconnect(done.append)


def dark_palette() -> QPalette:
    """Roughly macOS's dark appearance, to show the window follows the palette."""
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2b2d", QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1e1e1f", QPalette.ColorRole.AlternateBase: "#3a3a3c",
        QPalette.ColorRole.Text: "#e6e6e6", QPalette.ColorRole.Button: "#3a3a3c",
        QPalette.ColorRole.ButtonText: "#e6e6e6", QPalette.ColorRole.Highlight: "#0a64d8",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.PlaceholderText: "#8e8e93",
        QPalette.ColorRole.Mid: "#48484a", QPalette.ColorRole.Dark: "#1c1c1e", QPalette.ColorRole.Light: "#545456",
        QPalette.ColorRole.ToolTipBase: "#3a3a3c", QPalette.ColorRole.ToolTipText: "#e6e6e6",
    }
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6e6e73"))
    return p


def main() -> None:
    model = sys.argv[1]
    data = Path(tempfile.mkdtemp(prefix="mlx-flux-shots-"))
    app, window = create_app(["app", "--model", model, "--data-dir", str(data)])
    window.setGeometry(0, 0, 1440, 900)
    window.show()
    wait(app, lambda: window.queue.loading is None)
    window.controls.set_size(512, 512)

    for prompt in PROMPTS:
        generate(app, window, prompt)
    window.historyList.setFocus()
    shoot(app, "main.png")

    # Mid-generation: hold the worker inside step 2 while the screen is grabbed.
    gate = threading.Event()
    window.queue.worker.progress.connect(lambda step, total, e: step == 2 and gate.wait(60),
                                         Qt.ConnectionType.DirectConnection)
    window.promptEdit.setPlainText("An astronaut riding a horse on the moon, cinematic lighting")
    window.countSpin.setValue(3)
    window.generate()
    wait(app, lambda: "step 2/" in window.progressLabel.text().lower())  # a batch: "Images 1–3 of 3 · step 2/4"
    shoot(app, "generating.png")
    gate.set()
    wait(app, lambda: not window.queue.is_busy())

    window.historySearch.setText("fox")
    window.historyList.setCurrentIndex(window.historyModel.index(0))
    app.setPalette(dark_palette())
    shoot(app, "main-dark.png")
    window.close()


if __name__ == "__main__":
    main()
