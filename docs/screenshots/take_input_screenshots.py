"""The README screenshots of LoRAs and of starting from an image: loras.png (two LoRAs with their
names, trigger words and scales), img2img.png and kontext.png (a Kontext edit, set up).

    python tests/tiny_models.py /tmp/tiny-schnell --variant schnell
    python tests/tiny_models.py /tmp/tiny-kontext --variant dev   # then, in /tmp/tiny-kontext/model_index.json,
                                                                  # "_class_name": "FluxKontextPipeline"
    PYTHONPATH=.:tests QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1440x900x24" \\
        python docs/screenshots/take_input_screenshots.py /tmp/tiny-schnell /tmp/tiny-kontext

Tiny random models paint noise; the point is the window around them. The input image is drawn
here (a small landscape) and the LoRAs are small random ones for the tiny model
(tests/lora_files.py) with a trainer's metadata, so nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shotkit import generate, isolate, landscape, place, shoot, wait  # noqa: E402

TMP = isolate()

from app.main import create_app  # noqa: E402


def loras(folder: Path) -> list[Path]:
    """Two LoRAs that fit the tiny schnell model, named as kohya sd-scripts names them."""
    from test_app_lora import write_lora

    return [write_lora(folder / "watercolour.safetensors", seed=1,
                       metadata={"ss_output_name": "Watercolour", "trigger_words": "wcstyle"}),
            write_lora(folder / "ink_sketch.safetensors", seed=2, metadata={"ss_output_name": "Ink Sketch"})]


def main() -> None:
    schnell, kontext = sys.argv[1], sys.argv[2]
    photo = landscape(TMP / "lake-at-sunset.png")
    app, window = create_app(["app", "--model", schnell, "--data-dir", str(TMP / "data")])
    place(window)
    wait(lambda: window.queue.loading is None)

    # LoRAs: two of them, one at 0.65, and an image made with both.
    window.controls.set_size(512, 512)
    for path in loras(TMP / "loras"):
        window.lora_controller.add_path(path)
    window.loraPanel.rows()[1].scaleSpin.setValue(0.65)
    generate(window, "a lighthouse on a cliff at dusk, wcstyle")
    window.loraList.setCurrentRow(1)
    shoot("loras.png", window)
    while window.loraPanel.rows():
        window.loraPanel.rows()[0].removeButton.click()

    # img2img: a photo in the well, strength 0.6 and its 3:2 shape (smaller than its own size, to be
    # quick on a CPU), then one result.
    window.input_controller.use_file(photo)
    wait(lambda: not window.input_controller.is_loading())
    window.controls.set_size(768, 512)
    generate(window, "The same lake at night under the northern lights")
    window.promptEdit.setFocus()
    shoot("img2img.png", window)

    # Kontext: the well asks for the image to edit, no strength, the Kontext size. (Not generated:
    # a tiny model on a CPU takes many minutes at Kontext's ~1 Mpx.)
    window.choose_model(kontext)
    wait(lambda: window.queue.loading is None and window.model_info is not None
         and window.model_info.variant == "kontext")
    window.input_controller.use_file(photo)
    wait(lambda: not window.input_controller.is_loading())
    window.promptEdit.setPlainText("Make it winter: snow on the hills, the lake frozen")
    window.promptEdit.setFocus()
    shoot("kontext.png", window)
    window.close()


if __name__ == "__main__":
    main()
