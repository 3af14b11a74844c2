"""The image viewer screenshots (docs/screenshots/viewer-zoomed.png, batch-grid.png, compare.png,
quick-look.png) on a stand-in engine that paints a small scene per seed (no model needed):

    PYTHONPATH=.:tests QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1440x900x24" \
        python docs/screenshots/take_viewer_screenshots.py
"""
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shotkit import isolate, place, pump, shoot, wait  # noqa: E402

TMP = isolate()

from PIL import Image, ImageDraw, ImageFilter  # noqa: E402
from PySide6.QtCore import QItemSelection, QItemSelectionModel, QPointF  # noqa: E402

import app.worker as worker_module  # noqa: E402
from mlx_flux.engine import GenerationResult  # noqa: E402
from test_app_support import FakePipeline, fake_loader  # noqa: E402


def scene(width: int, height: int, seed: int) -> Image.Image:
    """A lighthouse at dusk, different for each seed: sky, sun, sea, rocks, the tower and its beam."""
    rng = random.Random(seed)
    img = Image.new("RGB", (width, height))
    d = ImageDraw.Draw(img)
    top, low = (rng.randint(20, 70), rng.randint(30, 80), rng.randint(90, 150)), (rng.randint(220, 255), rng.randint(120, 180), rng.randint(60, 110))
    horizon = int(height * rng.uniform(0.55, 0.68))
    for y in range(horizon):
        t = y / horizon
        d.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, low)))
    sx, r = rng.randint(width // 5, width * 4 // 5), rng.randint(width // 16, width // 9)
    d.ellipse([sx - r, horizon - r * 1.2, sx + r, horizon + r * 0.8], fill=(255, 214, 150))
    for y in range(horizon, height):
        t = (y - horizon) / (height - horizon)
        d.line([(0, y), (width, y)], fill=(int(40 - 25 * t), int(60 - 30 * t), int(100 - 40 * t)))
    for _ in range(60):  # the sun's glitter on the water
        x, y = sx + rng.gauss(0, width / 18), rng.randint(horizon + 2, height - 1)
        d.line([(x - 6, y), (x + 6, y)], fill=(255, 200, 140), width=2)
    lx = rng.choice([width // 5, width * 3 // 4])
    d.polygon([(lx - width // 5, height), (lx - width // 14, horizon - height // 30), (lx + width // 10, horizon),
               (lx + width // 4, height)], fill=(28, 24, 30))
    tw, th = width // 26, height // 3
    base = horizon - height // 40
    d.polygon([(lx - tw, base), (lx - tw * 0.7, base - th), (lx + tw * 0.7, base - th), (lx + tw, base)], fill=(235, 230, 220))
    for k in range(1, 4):
        y = base - th * k / 4
        d.rectangle([lx - tw, y - th / 16, lx + tw, y], fill=(190, 40, 40))
    d.rectangle([lx - tw * 0.8, base - th - height // 22, lx + tw * 0.8, base - th], fill=(255, 240, 170))
    side = rng.choice([-1, 1])
    d.polygon([(lx, base - th - height // 44), (lx + side * width, base - th - height // 6), (lx + side * width, base - th + height // 12)],
              fill=(255, 236, 170))
    return img.filter(ImageFilter.GaussianBlur(0.6))


class PaintingPipeline(FakePipeline):
    def _result(self, request):
        return GenerationResult(image=scene(request.width, request.height, request.seed), latents=None, request=request)


def main() -> None:
    worker_module.load_pipeline = fake_loader(PaintingPipeline())
    (TMP / "FLUX.1-schnell").mkdir()
    from app.main import create_app

    app, window = create_app(["mlx-flux-app", "--data-dir", str(TMP / "data"), "--model", str(TMP / "FLUX.1-schnell")])
    place(window)
    wait(lambda: window.queue.loading is None and window.model_info is not None)

    # A batch of four: the grid once it is done.
    window.promptEdit.setPlainText("a lighthouse at dusk, oil painting")
    window.widthSpin.setValue(768)
    window.heightSpin.setValue(768)
    window.seedSpin.setValue(7)
    window.randomSeedCheck.setChecked(False)
    window.countSpin.setValue(4)
    window.generate()
    pump(0.3)
    wait(lambda: not window.queue.is_busy())
    pump(0.5)
    shoot("batch-grid.png", window)

    window.viewer.show_tile(0)  # seed 7: the tower on the right
    window.previewView.set_view_state((False, 2.0, QPointF(0.68, 0.36)))
    shoot("viewer-zoomed.png", window)

    window.zoomFitAction.trigger()
    window.quickLookAction.trigger()  # Space: the image large over the screen
    wait(lambda: window.viewer.quick_look is not None and window.viewer.quick_look.isVisible())
    shoot("quick-look.png")
    window.viewer.quick_look.close()
    pump(0.3)

    # One more, seed 9 at 8 steps, compared with the batch's seed 8 (4 steps): two settings differ.
    window.countSpin.setValue(1)
    window.seedSpin.setValue(9)
    window.stepsSlider.setValue(8)
    window.generate()
    pump(0.3)
    wait(lambda: not window.queue.is_busy())
    pump(0.5)
    model = window.historyModel  # newest first: seed 9 (8 steps), then seeds 10, 9, 8, 7
    selection = QItemSelection(model.index(0), model.index(0))
    selection.select(model.index(3), model.index(3))
    window.historyList.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    window.viewer.toggle_compare()
    shoot("compare.png", window)
    window.close()
    pump(0.3)


if __name__ == "__main__":
    main()
