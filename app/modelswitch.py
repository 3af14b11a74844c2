"""Asking before an earlier image's settings switch the model (or its precision).

Restoring an image made with another model used to switch to it on the spot, and a FLUX.1
model is 10-33 GB to load. The person decides, knowing the cost: "Switch Model" loads the
image's model, "Keep Current Model" applies the rest of its settings to the model in use.
The size is an estimate from the files on disk (or FLUX.1's known sizes for a hub model not
looked into), without importing MLX.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from app.models import display_name, is_local
from app.params import ModelChoice

GB = 1000**3  # as Finder counts
QUANTIZED_MANIFEST = "mlx-flux.json"  # our quantized folder (mlx_flux.quantized_io): stored at its bits
# FLUX.1's parameters (12B transformer, 4.8B T5-XXL, CLIP-L and the VAE): what a hub model loads.
FLUX_PARAMS = 11.9e9 + 4.76e9
SMALL_PARAMS = 0.21e9  # CLIP and the VAE: never quantized


def precision_text(quantize: int | None) -> str:
    return f"{quantize}-bit" if quantize else "full precision"


def choice_text(choice: ModelChoice) -> str:
    """'FLUX.1-dev 8-bit' / 'FLUX.1-dev (full precision)'."""
    name = display_name(choice.source)
    return f"{name} {choice.quantize}-bit" if choice.quantize else f"{name} (full precision)"


def load_bytes(choice: ModelChoice) -> int | None:
    """About how many bytes loading `choice` reads into memory; None if it cannot be told."""
    bits = choice.quantize
    if not is_local(choice.source):  # bfloat16 weights; quantized: the bits plus a scale and bias per 64
        per_param = 2.0 if not bits else bits / 8 + 4 / 64
        return int(FLUX_PARAMS * per_param + SMALL_PARAMS * 2)
    path = Path(choice.source).expanduser()
    try:
        files = [path] if path.is_file() else list(path.rglob("*.safetensors"))
        stored = sum(f.stat().st_size for f in files)
    except OSError:
        return None
    if not files:
        return None
    if bits and not (path / QUANTIZED_MANIFEST).is_file():
        stored = int(stored * (bits / 16 + 2 / 64))  # from bfloat16 on disk
    return stored


def describe_bytes(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / GB:.0f} GB" if n >= 2 * GB else f"{n / GB:.1f} GB" if n >= GB / 10 else f"{n / 1000**2:.1f} MB"


def question(made_with: ModelChoice) -> str:
    return (f"This image was made with {choice_text(made_with)}; switch model? "
            f"(loads {describe_bytes(load_bytes(made_with))})")


def ask_model_switch(parent: QWidget, made_with: ModelChoice, current: ModelChoice) -> bool:
    """Ask whether to switch to the model an image was made with; True: switch."""
    box = QMessageBox(QMessageBox.Icon.Question, "Switch Model", question(made_with), parent=parent)
    box.setObjectName("confirmModelSwitchBox")
    keep_text = "Keep Current Model"
    same_model = made_with.source == current.source
    box.setInformativeText(
        f"It is in use at {precision_text(current.quantize)} now. {keep_text} applies the image's other "
        "settings to it." if same_model else
        f"The current model is {choice_text(current)}. {keep_text} applies the image's other settings to it.")
    switch = box.addButton("Switch Model", QMessageBox.ButtonRole.AcceptRole)
    switch.setObjectName("switchModelButton")
    keep = box.addButton(keep_text, QMessageBox.ButtonRole.RejectRole)
    keep.setObjectName("keepModelButton")
    box.setDefaultButton(keep)  # a reload of many GB is never the accidental choice
    box.setEscapeButton(keep)
    box.exec()
    return box.clickedButton() is switch
