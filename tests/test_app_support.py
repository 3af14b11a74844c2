"""Helpers shared by the app tests (no tests here): a scriptable stand-in pipeline for failure
cases the real tiny model cannot produce on demand, and a window fixture factory."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image

from mlx_flux.engine import DECODE, GenerationResult, ImageInput, PhaseCallback, StepCallback, StepEvent
from mlx_flux.images import load_image, own_size
from mlx_flux.request import GenerationRequest, ImageRef, InputError, LoraRef
from mlx_flux.variants import VARIANTS

TIMEOUT = 60_000  # ms: generous, a slow 2-core CI runner must never flake


def _colour(seed: int) -> tuple[int, int, int]:
    """A fake image's colour: a function of its seed, so tests can tell images apart."""
    return seed * 37 % 256, seed * 91 % 256, seed * 13 % 256


@dataclass
class FakePipeline:
    """Behaves like FluxPipeline for the worker: steps with callbacks, previews, results.

    It implements `mlx_flux.engine.Engine` with the engine's own types (`GenerationRequest`,
    `GenerationResult`, `StepEvent`); tests/test_engine_protocol.py checks its signatures
    against the protocol, so it cannot drift from the real engine unnoticed.
    """

    variant: str = "schnell"
    model_name: str = "fake-schnell"
    quantize: int | None = None
    fail_with: BaseException | None = None  # raised from generate() after the first step
    step_delay: float = 0.0
    max_batch: int = 16  # what auto_max_batch answers: the engine's memory-based chunk size
    calls: list[dict[str, Any]] = field(default_factory=list)  # one per generate()
    batch_calls: list[dict[str, Any]] = field(default_factory=list)  # one per generate_batch()
    warmups: list[tuple[int, int]] = field(default_factory=list)
    loras: tuple[LoraRef, ...] = ()
    lora_calls: list[list[tuple[str, float]]] = field(default_factory=list)  # one per set_loras()
    # The decode after the last step: `decoding` is set when one begins; with `decode_gate` the
    # decode then waits for the test to set the gate (a cancel or a quit can land meanwhile).
    decoding: threading.Event = field(default_factory=threading.Event)
    decode_gate: threading.Event | None = None

    def set_loras(self, loras: Sequence[tuple[str | Path, float]]) -> None:
        """Records the set; a LoRA is named by its file and 'hashed' by its name (no file is read)."""
        pairs = [(str(path), float(scale)) for path, scale in loras]
        self.lora_calls.append(pairs)
        self.loras = tuple(LoraRef(Path(p).name, Path(p).name[:12], s) for p, s in pairs)

    @property
    def default_steps(self) -> int:
        return VARIANTS[self.variant].steps

    @property
    def default_guidance(self) -> float | None:
        return VARIANTS[self.variant].guidance

    def resolve(self, request: GenerationRequest, image: ImageInput | None = None,
                mask: ImageInput | None = None) -> GenerationRequest:
        """As the engine: defaults filled; an input image makes it img2img at the image's size,
        or (a "kontext" variant) an edit with the reference at the size the request names; a "fill"
        variant inpaints the mask given (the request names it) or outpaints the request's expand."""
        request.check()
        picture = load_image(image) if image is not None else None
        fills = VARIANTS[self.variant].fills
        painted = load_image(mask) if mask is not None else None
        if (painted is not None or request.expand is not None) and not fills:
            raise InputError(f"{self.model_name} is not a Fill model: it takes no mask or expand")
        if fills and picture is None:
            raise InputError(f"{self.model_name} fills an input image: pass it as image=")
        if painted is None and request.mask is not None:
            raise InputError("this request names a mask: pass it as mask=")
        if painted is not None and request.mask is not None and request.mask.fingerprint != painted.ref.fingerprint:
            raise InputError("the mask given is not the request's mask")
        if fills and painted is None and request.expand is None:
            raise InputError("a Fill model needs a mask or expand")
        if picture is None and request.image is not None:
            raise InputError("this request starts from an input image: pass it as image=")
        if picture is not None and request.image is not None and request.image.fingerprint != picture.ref.fingerprint:
            raise InputError("the image given is not the request's input image")
        edits = picture is not None and VARIANTS[self.variant].edits
        if edits and request.strength is not None:
            raise InputError(f"{self.model_name} edits its input image: it takes no strength")
        size = own_size(picture) if picture is not None else (1024, 1024)
        width, height = request.width or size[0], request.height or size[1]
        used = (request.image.width, request.image.height) if edits and request.image else (width, height)
        return request.with_(
            width=width, height=height,
            image=None if picture is None else ImageRef(picture.ref.fingerprint, *used),
            strength=(request.strength or 0.6) if picture is not None and not edits and not fills else None,
            mask=None if painted is None else ImageRef(painted.ref.fingerprint, *painted.size),
            expand=request.expand,
            mode="text-to-image" if picture is None else "edit" if edits else
            ("inpaint" if painted is not None else "outpaint") if fills else "img2img",
            steps=self.default_steps if request.steps is None else request.steps,
            guidance=(self.default_guidance if request.guidance is None else float(request.guidance))
            if self.default_guidance is not None else None,
            seed=1234 if request.seed is None else request.seed,
            model=self.model_name, quantize=self.quantize, loras=self.loras,
        )

    def generate(self, prompt: str | GenerationRequest, width: int | None = None, height: int | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int | None = None,
                 latents: Any = None, callback: StepCallback | None = None,
                 image: ImageInput | None = None, strength: float | None = None,
                 mask: ImageInput | None = None,
                 expand: tuple[int, int, int, int] | None = None,
                 on_phase: PhaseCallback | None = None) -> GenerationResult:
        request = self.resolve(GenerationRequest.of_call(prompt, width=width, height=height, steps=steps,
                                                         guidance=guidance, seed=seed, strength=strength,
                                                         expand=expand), image, mask)
        self.calls.append(dict(prompt=request.prompt, width=request.width, height=request.height,
                               steps=request.steps, guidance=request.guidance, seed=request.seed,
                               image=None if image is None else str(image), strength=request.strength,
                               mode=request.mode, mask=None if mask is None else str(mask),
                               expand=request.expand, request=request))
        self._steps(request.steps, request.seed, callback)
        self._decode(on_phase)
        return self._result(request)

    def generate_batch(self, prompt: str | GenerationRequest, seeds: Sequence[int], width: int | None = None,
                       height: int | None = None, steps: int | None = None, guidance: float | None = None,
                       callback: StepCallback | None = None, max_batch: int | None = None,
                       image: ImageInput | None = None, strength: float | None = None,
                       mask: ImageInput | None = None,
                       expand: tuple[int, int, int, int] | None = None,
                       on_phase: PhaseCallback | None = None) -> list[GenerationResult]:
        """One pass for all seeds (the worker chunks by auto_max_batch and passes max_batch)."""
        seeds = list(seeds)
        request = GenerationRequest.of_call(prompt, width=width, height=height, steps=steps, guidance=guidance,
                                            strength=strength, expand=expand)
        request = self.resolve(request.with_(seed=seeds[0]), image, mask)
        self.batch_calls.append(dict(prompt=request.prompt, seeds=seeds, width=request.width,
                                     height=request.height, steps=request.steps, guidance=request.guidance,
                                     max_batch=max_batch, image=None if image is None else str(image),
                                     strength=request.strength, mode=request.mode,
                                     mask=None if mask is None else str(mask), expand=request.expand,
                                     request=request))
        self._steps(request.steps, seeds[0], callback)  # a batch previews its first image
        self._decode(on_phase)
        return [self._result(request.with_(seed=seed)) for seed in seeds]

    def _steps(self, steps: int, seed: int, callback) -> None:
        start = time.monotonic()
        for step in range(1, steps + 1):
            time.sleep(self.step_delay)
            if callback is not None:
                image = Image.new("RGB", (8, 8), _colour(seed))
                callback(StepEvent(step, steps, time.monotonic() - start, 1.0 - step / steps, lambda: image))
            if self.fail_with is not None:
                raise self.fail_with

    def _decode(self, on_phase: PhaseCallback | None) -> None:
        """As the engine: the phase is announced (raising cancels), then the decode cannot stop."""
        if on_phase is not None:
            on_phase(DECODE)
        self.decoding.set()
        if self.decode_gate is not None:
            self.decode_gate.wait(TIMEOUT / 1000)

    def _result(self, request: GenerationRequest) -> GenerationResult:
        image = Image.new("RGB", (request.width, request.height), _colour(request.seed))
        return GenerationResult(image=image, latents=None, request=request)

    def auto_max_batch(self, width: int, height: int) -> int:
        return self.max_batch

    def warmup(self, width: int = 1024, height: int = 1024, batch: int = 1, force: bool = False) -> float:
        self.warmups.append((width, height))
        return 0.0


def fake_loader(pipe: FakePipeline | Callable[[], Any], loads: list | None = None):
    """A replacement for app.worker.load_pipeline returning `pipe` (or raising what it raises)."""

    def load(choice, progress):
        if loads is not None:
            loads.append(choice)
        progress("Loading fake", 0.5)
        return pipe() if callable(pipe) and not isinstance(pipe, FakePipeline) else pipe

    return load


def open_window(qtbot, data_dir: Path, model: Path | str | None = None, extra: list[str] | None = None):
    """create_app on a throw-away data dir, shown and registered for cleanup."""
    from app.main import create_app

    argv = ["mlx-flux-app", "--data-dir", str(data_dir)]
    if model is not None:
        argv += ["--model", str(model)]
    app, window = create_app(argv + (extra or []))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return app, window


def wait_ready(qtbot, window) -> None:
    """Until the model is loaded (or failed) and nothing is queued."""
    qtbot.waitUntil(lambda: window.queue.loading is None and not window.queue.is_busy(), timeout=TIMEOUT)


_PIPELINES: dict = {}


def caching_loader(loads: list | None = None):
    """The real loader, but each model is loaded once per test session.

    Loading is covered by the tests that switch models; everywhere else this keeps the run
    short. Progress is still reported, as the real loader would.
    """
    import app.worker as worker_module

    real = worker_module.load_pipeline

    def load(choice, progress):
        if loads is not None:
            loads.append(choice)
        if choice not in _PIPELINES:
            _PIPELINES[choice] = real(choice, progress)
        else:
            progress("Ready", 1.0)
        return _PIPELINES[choice]

    return load


def set_spin(qtbot, spin, value: int) -> None:
    """Select the spin box text and type a new value, as a person would."""
    from PySide6.QtCore import Qt

    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, str(value))
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert spin.value() == value


def visible_box(window, name: str):
    """The message box `name` the window has open (None: none is)."""
    from PySide6.QtWidgets import QMessageBox

    return next((box for box in window.findChildren(QMessageBox, name) if box.isVisible()), None)


def answer_box(qtbot, window, name: str, button: str) -> None:
    """Wait for the window's message box `name` and click its button `button` (objectNames)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPushButton

    qtbot.waitUntil(lambda: visible_box(window, name) is not None, timeout=TIMEOUT)
    qtbot.mouseClick(visible_box(window, name).findChild(QPushButton, button), Qt.MouseButton.LeftButton)
    if window.isVisible():  # as a window manager does when a sheet closes (offscreen Qt does not)
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=TIMEOUT)


def type_prompt(qtbot, window, text: str) -> None:
    window.promptEdit.setFocus()
    window.promptEdit.selectAll()
    qtbot.keyClicks(window.promptEdit, text)


def small(qtbot, window, size: int = 64) -> None:
    set_spin(qtbot, window.widthSpin, size)
    set_spin(qtbot, window.heightSpin, size)


def ready_window(qtbot, data_dir: Path, model: Path | str):
    """A window on `model`, loaded, idle and set to a small size: the usual starting point."""
    _, window = open_window(qtbot, data_dir, model)
    wait_ready(qtbot, window)
    small(qtbot, window)
    return window
