"""The main README screenshots from the running app: main.png, generating.png (a batch of three at
step 2 of 4), decoding.png (a run in its "Decoding…" phase) and main-dark.png.

    python tests/tiny_models.py /tmp/tiny-schnell --variant schnell
    PYTHONPATH=.:tests QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1440x900x24" \
        python docs/screenshots/take_screenshots.py /tmp/tiny-schnell

A tiny random model paints noise; the point is the window around it. The worker thread is held
(in this script only) inside step 2, and just before the decode, while the screen is grabbed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shotkit import generate, isolate, place, pump, shoot, wait  # noqa: E402

TMP = isolate()

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QColor, QPalette  # noqa: E402

from app.main import create_app  # noqa: E402

PROMPTS = [
    "A lighthouse on a cliff at dusk, warm light, volumetric fog, 35mm photo",
    "Macro photo of a dew-covered spider web at sunrise",
    "Isometric cozy reading nook, soft pastel colors, 3D render",
    "A red fox in fresh snow, telephoto, shallow depth of field",
]


def hold(signal, when) -> threading.Event:
    """Block the worker thread where `signal` is emitted with arguments `when` accepts, until the
    returned event is set (the GUI thread goes on and shows that moment)."""
    gate = threading.Event()
    signal.connect(lambda *args: when(*args) and gate.wait(120), Qt.ConnectionType.DirectConnection)
    return gate


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
    app, window = create_app(["app", "--model", model, "--data-dir", str(TMP / "data")])
    place(window)
    wait(lambda: window.queue.loading is None)
    window.controls.set_size(512, 512)

    for prompt in PROMPTS:
        generate(window, prompt)
    window.historyList.setFocus()
    shoot("main.png", window)

    # A batch of three, held inside step 2.
    worker = window.queue.worker
    gate = hold(worker.progress, lambda step, total, elapsed: step == 2)
    window.promptEdit.setPlainText("An astronaut riding a horse on the moon, cinematic lighting")
    window.countSpin.setValue(3)
    window.generate()
    wait(lambda: "step 2/" in window.progressLabel.text().lower())  # "Images 1–3 of 3 · step 2/4"
    shoot("generating.png", window)
    gate.set()
    wait(lambda: not window.queue.is_busy())

    # One image, held after its steps, where the decode begins.
    window.countSpin.setValue(1)
    decode_gate = hold(worker.phase, lambda phase: phase == "decode")
    window.promptEdit.setPlainText("A paper boat on a rain puddle, city lights reflected, night")
    window.generate()
    wait(lambda: "decoding" in window.progressLabel.text().lower())
    pump(2.2)  # the elapsed time moves on while it decodes
    shoot("decoding.png", window)
    gate.set()
    decode_gate.set()
    wait(lambda: not window.queue.is_busy())

    window.close()
    pump(0.5)

    # Dark mode: the app launched in it (a new window on the same data), the history searched.
    app.setPalette(dark_palette())
    app, window = create_app(["app", "--model", model, "--data-dir", str(TMP / "data")])
    place(window)
    wait(lambda: window.queue.loading is None)
    window.historySearch.setText("fox")
    window.historyList.setCurrentIndex(window.historyModel.index(0))
    window.historyList.setFocus()
    shoot("main-dark.png", window)
    window.close()
    pump(0.5)


if __name__ == "__main__":
    main()
