"""The README screenshots of getting a model: first-run.png (a new user: a fresh data folder, an
empty Hugging Face cache, no model given) and model-manager.png (File ▸ Models… with FLUX.1-schnell
downloading: bytes, speed, time left).

    python tests/tiny_models.py /tmp/tiny-schnell --variant schnell
    PYTHONPATH=.:tests QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1440x900x24" \
        python docs/screenshots/take_model_screenshots.py /tmp/tiny-schnell

Nothing is fetched from the internet: the "hub" is tests/hub_server.py on 127.0.0.1 serving the
tiny model as black-forest-labs/FLUX.1-schnell, its sends slowed (here only) to about 1 MB/s so
the grab catches the download under way. Its sizes are the tiny model's (megabytes, not 33.7 GB);
the first-run panel, before the hub is asked, gives the recorded figure for the real model.
The app is told it runs on a 16 GB Mac, so the precision advice reads as it does there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shotkit import isolate, place, pump, shoot, wait  # noqa: E402

TMP = isolate(hf_offline=False)
# The cache where huggingface_hub keeps it on a Mac, so the manager names it as it would there.
os.environ["HOME"] = str(TMP)
os.environ["HF_HUB_CACHE"] = str(TMP / ".cache" / "huggingface" / "hub")

import hub_server  # noqa: E402  (tests/hub_server.py)

SCHNELL = "black-forest-labs/FLUX.1-schnell"
RATE = 1_000_000  # bytes per second the stand-in hub sends


class _Slow:
    """The handler's output, in small chunks at RATE."""

    def __init__(self, raw) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        for i in range(0, len(view), 32_768):
            chunk = view[i:i + 32_768]
            self.raw.write(chunk)
            time.sleep(len(chunk) / RATE)
        return len(data)

    def __getattr__(self, name):
        return getattr(self.raw, name)


class _SlowHandler(hub_server._Handler):
    def setup(self) -> None:
        super().setup()
        self.wfile = _Slow(self.wfile)


def serve(model: Path) -> str:
    """The stand-in hub, and huggingface_hub pointed at it (as tests/hub_server.start_hub does)."""
    hub_server._Handler = _SlowHandler  # HubServer.start subclasses the module's _Handler
    hub = hub_server.HubServer(repos={SCHNELL: hub_server.Repo(model)})
    url = hub.start()
    os.environ["HF_ENDPOINT"] = url
    from huggingface_hub import constants

    constants.ENDPOINT = url
    constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
    constants.HF_HUB_CACHE = os.environ["HF_HUB_CACHE"]
    constants.HF_HUB_OFFLINE = False
    return url


def main() -> None:
    serve(Path(sys.argv[1]))
    import app.machine as machine
    from app.main import create_app

    # A 16 GB Mac, as most are: the precision advice and the first run's precision say 4-bit.
    machine.IS_MAC = True
    machine.physical_memory = lambda: 16 * 2**30

    app, window = create_app(["app", "--data-dir", str(TMP / "data")])
    place(window)
    panel = window.model_setup.panel
    wait(panel.isVisible)
    window.promptEdit.setFocus()
    shoot("first-run.png", window)

    panel.downloadButton.click()  # Download… opens the manager
    dialog = window.model_setup.dialog
    wait(lambda: dialog is not None and dialog.isVisible())
    row = dialog.rows[SCHNELL]
    wait(lambda: not row.sizeLabel.text().startswith("about"))  # the hub's listing
    row.downloadButton.click()
    wait(lambda: row.progressBar.value() > 350 and " left" in row.progressLabel.text())
    row.pauseButton.setFocus()
    # Xvfb has no window manager to frame the dialog: grab the dialog alone, with a hairline edge.
    border = shoot("model-manager.png", dialog)
    subprocess.run(["mogrify", "-bordercolor", "#a0a0a0", "-border", "1", str(border)], check=True)
    print("manager:", dialog.frameGeometry(), row.progressLabel.text())
    pump(0.2)
    os._exit(0)  # the download thread and the slowed server need no orderly goodbye


if __name__ == "__main__":
    main()
