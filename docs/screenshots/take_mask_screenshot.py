"""The mask editor screenshot (docs/screenshots/mask.png), on the stand-in Fill engine (no model needed):

    PYTHONPATH=.:tests QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1440x900x24" \\
        python docs/screenshots/take_mask_screenshot.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shotkit import isolate, landscape, place, pump, shoot, wait  # noqa: E402

TMP = isolate()

import app.worker as worker_module  # noqa: E402
from test_app_mask import drag  # noqa: E402
from test_app_support import FakePipeline, fake_loader  # noqa: E402


def main() -> None:
    worker_module.load_pipeline = fake_loader(FakePipeline(variant="fill", model_name="fake-fill"))
    (TMP / "FLUX.1-Fill-dev").mkdir()
    from app.main import create_app

    app, window = create_app(["mlx-flux-app", "--data-dir", str(TMP / "data"), "--model", str(TMP / "FLUX.1-Fill-dev")])
    place(window)
    wait(lambda: window.queue.loading is None)
    photo = landscape(TMP / "lake.png", (768, 512))
    window.promptEdit.setPlainText("a red rowing boat")
    window.input_controller.use_file(photo)
    wait(lambda: not window.input_controller.is_loading())
    pump(0.5)
    c = window.maskCanvas
    window.maskPanel.brushSizeSpin.setValue(40)
    drag(c, [(300, 410), (340, 420), (400, 422), (460, 412)])  # where the boat goes, on the lake
    drag(c, [(320, 440), (380, 446), (440, 438)])
    window.maskPanel.set_expand((0, 0, 0, 0))
    shoot("mask.png", window, settle=0.8)
    window.close()
    pump(0.3)


if __name__ == "__main__":
    main()
