"""Helpers shared by the app tests (no tests here): a scriptable stand-in pipeline for failure
cases the real tiny model cannot produce on demand, and a window fixture factory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image

TIMEOUT = 60_000  # ms: generous, a slow 2-core CI runner must never flake


@dataclass
class FakeEvent:
    step: int
    total: int
    elapsed: float
    _image: Image.Image

    def preview(self) -> Image.Image:
        return self._image


@dataclass
class FakeResult:
    image: Image.Image
    seed: int
    metadata: dict[str, Any]
    latents: Any = None


def _colour(seed: int) -> tuple[int, int, int]:
    """A fake image's colour: a function of its seed, so tests can tell images apart."""
    return seed * 37 % 256, seed * 91 % 256, seed * 13 % 256


@dataclass
class FakePipeline:
    """Behaves like FluxPipeline for the worker: steps with callbacks, previews, results."""

    variant: str = "schnell"
    model_name: str = "fake-schnell"
    fail_with: BaseException | None = None  # raised from generate() after the first step
    step_delay: float = 0.0
    max_batch: int = 16  # what auto_max_batch answers: the engine's memory-based chunk size
    calls: list[dict[str, Any]] = field(default_factory=list)  # one per generate()
    batch_calls: list[dict[str, Any]] = field(default_factory=list)  # one per generate_batch()
    warmups: list[tuple[int, int]] = field(default_factory=list)

    @property
    def default_steps(self) -> int:
        return 4 if self.variant == "schnell" else 28

    @property
    def default_guidance(self) -> float | None:
        return None if self.variant == "schnell" else 3.5

    def generate(self, prompt, width=1024, height=1024, steps=None, guidance=None, seed=None,
                 latents=None, callback=None):
        steps = steps or self.default_steps
        seed = 1234 if seed is None else seed
        self.calls.append(dict(prompt=prompt, width=width, height=height, steps=steps, guidance=guidance, seed=seed))
        self._steps(steps, seed, callback)
        return self._result(prompt, seed, width, height, steps, guidance)

    def generate_batch(self, prompt, seeds, width=1024, height=1024, steps=None, guidance=None, callback=None,
                       max_batch=None):
        """One pass for all seeds (the worker chunks by auto_max_batch and passes max_batch)."""
        steps = steps or self.default_steps
        seeds = list(seeds)
        self.batch_calls.append(dict(prompt=prompt, seeds=seeds, width=width, height=height, steps=steps,
                                     guidance=guidance, max_batch=max_batch))
        self._steps(steps, seeds[0], callback)  # a batch previews its first image
        return [self._result(prompt, seed, width, height, steps, guidance) for seed in seeds]

    def _steps(self, steps: int, seed: int, callback) -> None:
        start = time.monotonic()
        for step in range(1, steps + 1):
            time.sleep(self.step_delay)
            if callback is not None:
                callback(FakeEvent(step, steps, time.monotonic() - start, Image.new("RGB", (8, 8), _colour(seed))))
            if self.fail_with is not None:
                raise self.fail_with

    def _result(self, prompt, seed, width, height, steps, guidance) -> FakeResult:
        metadata = dict(prompt=prompt, seed=seed, steps=steps, guidance=guidance, width=width, height=height,
                        model=self.model_name, version="test")
        return FakeResult(Image.new("RGB", (width, height), _colour(seed)), seed, metadata)

    def auto_max_batch(self, width, height):
        return self.max_batch

    def warmup(self, width=1024, height=1024, batch=1, force=False):
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
