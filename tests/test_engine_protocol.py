"""The real engine and the app tests' stand-in both implement `mlx_flux.engine.Engine`, with the
protocol's exact signatures: a change on either side fails here, naming the drift, instead of
leaving every test built on the stand-in describing an engine that no longer exists."""

from __future__ import annotations

import inspect

import pytest

from mlx_flux.engine import Engine
from test_app_support import FakePipeline

METHODS = sorted(name for name, value in vars(Engine).items()
                 if callable(value) and not name.startswith("_"))
ATTRIBUTES = sorted(name for name in Engine.__annotations__ if not name.startswith("_"))


def shape(function) -> list[tuple[str, str, object]]:
    """Parameter names, kinds and defaults (annotations are the protocol's documentation)."""
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(function).parameters.values()]


def drift(expected, actual) -> str:
    want, got = shape(expected), shape(actual)
    lines = [f"  protocol: {w}\n  actual:   {g}" for w, g in zip(want, got) if w != g]
    if len(want) != len(got):
        lines.append(f"  protocol has {len(want)} parameters, actual has {len(got)}: "
                     f"{[p[0] for p in want]} vs {[p[0] for p in got]}")
    return "\n".join(lines)


def implementations():
    from mlx_flux.pipeline import FluxPipeline

    return [FluxPipeline, FakePipeline]


def test_the_protocol_lists_what_the_app_uses():
    assert {"generate", "generate_batch", "resolve", "auto_max_batch", "warmup"} <= set(METHODS)
    assert {"model_name", "variant", "quantize", "default_steps", "default_guidance"} <= set(ATTRIBUTES)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cls", implementations(), ids=lambda c: c.__name__)
def test_methods_have_the_protocols_signature(cls, method):
    assert hasattr(cls, method), f"{cls.__name__} has no {method}() (mlx_flux.engine.Engine has)"
    problems = drift(getattr(Engine, method), getattr(cls, method))
    assert not problems, f"{cls.__name__}.{method} differs from Engine.{method}:\n{problems}"


def test_the_drift_message_names_the_parameter():
    def generate(self, prompt, width=1024, height=1024, steps=None, guidance=None, seed=None, latents=None,
                 on_step=None):
        ...

    assert "on_step" in drift(Engine.generate, generate)


def test_the_fake_has_every_attribute_and_is_an_engine():
    fake = FakePipeline()
    missing = [name for name in ATTRIBUTES if not hasattr(fake, name)]
    assert not missing, f"FakePipeline lacks Engine attributes {missing}"
    assert isinstance(fake, Engine)


def test_a_loaded_pipeline_has_every_attribute_and_is_an_engine(tiny_schnell):
    from mlx_flux.pipeline import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(tiny_schnell), dtype="float32")
    missing = [name for name in ATTRIBUTES if not hasattr(pipe, name)]
    assert not missing, f"FluxPipeline lacks Engine attributes {missing}"
    assert isinstance(pipe, Engine)
    fake = FakePipeline(variant=pipe.variant)
    for name in ("variant", "default_steps", "default_guidance", "quantize"):
        assert getattr(fake, name) == getattr(pipe, name), name  # the stand-in's defaults are the engine's
