"""Takes the README screenshots of starting from an image (img2img, and a Kontext edit) on an X server.

    python tests/tiny_models.py /tmp/tiny-schnell --variant schnell
    python tests/tiny_models.py /tmp/tiny-kontext --variant dev   # then, in /tmp/tiny-kontext/model_index.json,
                                                                  # "_class_name": "FluxKontextPipeline"
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/screenshots/take_input_screenshots.py /tmp/tiny-schnell /tmp/tiny-kontext

Tiny random models paint noise; the point is the window around them. The input image is drawn
here (a small landscape), so nothing is downloaded.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from take_screenshots import generate, shoot, wait  # noqa: E402

from app.main import create_app  # noqa: E402


def landscape(path: Path, size=(1200, 800)) -> Path:
    """A sunset over hills and a lake: something recognisable in the well and the history."""
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


def main() -> None:
    schnell, kontext = sys.argv[1], sys.argv[2]
    data = Path(tempfile.mkdtemp(prefix="mlx-flux-shots-"))
    photo = landscape(data / "lake-at-sunset.png")
    app, window = create_app(["app", "--model", schnell, "--data-dir", str(data)])
    window.setGeometry(0, 0, 1440, 900)
    window.show()
    wait(app, lambda: window.queue.loading is None)

    # img2img: a photo in the well, strength 0.6 and the image's own size, then one result.
    window.controls.set_size(512, 512)
    generate(app, window, "A lighthouse on a cliff at dusk, warm light, 35mm photo")
    window.input_controller.use_file(photo)
    wait(app, lambda: not window.input_controller.is_loading())
    window.controls.set_size(768, 512)
    generate(app, window, "The same lake at night under the northern lights")
    window.promptEdit.setFocus()
    shoot(app, "img2img.png")

    # Kontext: the well asks for the image to edit, no strength, the Kontext size. (Not generated:
    # a tiny model on a CPU takes many minutes at Kontext's ~1 Mpx.)
    window.choose_model(kontext)
    wait(app, lambda: window.queue.loading is None and window.model_info is not None
         and window.model_info.variant == "kontext")
    window.input_controller.use_file(photo)
    wait(app, lambda: not window.input_controller.is_loading())
    window.promptEdit.setPlainText("Make it winter: snow on the hills, the lake frozen")
    window.promptEdit.setFocus()
    shoot(app, "kontext.png")
    window.close()


if __name__ == "__main__":
    main()
