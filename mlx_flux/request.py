"""One generation, typed: what the user asks for, and (once made) exactly what made the image.

A `GenerationRequest` travels unchanged from the app's Generate button (or the CLI, or
`pipe.generate(...)`) through the engine, into the PNG's metadata and the history, and
back out when an image is restored. The engine fills in every default (`resolve`), so
`result.request` says exactly how to make the image again.

Metadata schema: the JSON object written into PNGs (and kept by the history) is
`to_metadata()`: the fields below by name, plus `schema` (its version) and `version` (of
mlx-flux). `from_metadata` reads every version, including images written before the schema
was versioned (schema 0: the same field names, no `quantize`), and the parsed `parameters`
text of other tools. A new input (an image, a mask, LoRAs) is a new field with a default
that means "not used", and a schema bump only when old readers would misread the new data.

Light on purpose: no MLX import, so the GUI and the CLI's argument checks can use it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from . import __version__
from .errors import FluxError

SCHEMA_VERSION = 1
SEED_LIMIT = 2**64  # seeds are 0 .. 2**64 - 1 (MLX's random key takes a 64-bit seed)
MAX_STEPS = 1000  # far beyond any useful schedule (FLUX.1-dev: 28..50), far short of a night's work
# What a stored request may hold at most (a PNG is anyone's file): past these a value is dropped
# rather than handed to an engine or a widget. The text encoders read a few hundred words at most.
MAX_PROMPT_CHARS = 10_000
_STORED_RANGES: dict[str, tuple[float, float]] = {
    "width": (16, 16384), "height": (16, 16384), "steps": (1, MAX_STEPS), "seed": (0, 2**64 - 1),
    "quantize": (2, 8), "guidance": (0.0, 100.0), "strength": (1e-6, 1.0),
}


class InputError(FluxError, ValueError):
    """A generation request the engine cannot honour (bad size, bad latents...)."""


@dataclass(frozen=True)
class LoraRef:
    """A LoRA that made an image: its file's name (never a path), content hash and scale."""

    name: str
    fingerprint: str  # the first 12 hex digits of the file's sha256
    scale: float

    @classmethod
    def from_metadata(cls, item: Any) -> LoraRef | None:
        """One entry of a stored `loras` list, or None when it is not one."""
        if not isinstance(item, Mapping):
            return None
        name, fingerprint, scale = item.get("name"), item.get("fingerprint"), item.get("scale")
        if not (isinstance(name, str) and isinstance(fingerprint, str) and _is_number(scale)
                and math.isfinite(scale)):
            return None
        return cls(name, fingerprint, float(scale))


@dataclass(frozen=True)
class ImageRef:
    """An input image as a request records it: a hash of its pixels and its size, never a path."""

    fingerprint: str  # the first 12 hex digits of the sha256 of its RGB pixels (and size)
    width: int
    height: int

    @classmethod
    def from_metadata(cls, item: Any) -> ImageRef | None:
        if not isinstance(item, Mapping):
            return None
        fingerprint, width, height = item.get("fingerprint"), item.get("width"), item.get("height")
        if not (isinstance(fingerprint, str) and _is_int(width) and _is_int(height) and width > 0 and height > 0):
            return None
        return cls(fingerprint, int(width), int(height))


# What a generation starts from (filled in by the engine).
TEXT_TO_IMAGE, IMAGE_TO_IMAGE, EDIT, INPAINT, OUTPAINT = "text-to-image", "img2img", "edit", "inpaint", "outpaint"
MODES = (TEXT_TO_IMAGE, IMAGE_TO_IMAGE, EDIT, INPAINT, OUTPAINT)


@dataclass(frozen=True)
class GenerationRequest:
    """Everything needed to make (or remake) one image.

    None means "the model's default" (steps, guidance), "random" (seed), or for the fields the
    engine fills in, "not known yet". In `result.request` every field is resolved.
    """

    prompt: str
    width: int | None = None        # None: 1024, or an input image's own size (see FluxPipeline.resolve)
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None   # None for models without guidance (schnell) once resolved
    seed: int | None = None
    image: ImageRef | None = None   # the input image (img2img's start, a Kontext model's reference)
    strength: float | None = None   # img2img: how much of the schedule runs (1.0 = all: text-to-image)
    mask: ImageRef | None = None    # a Fill model's inpainting mask (white: repaint, black: keep)
    expand: tuple[int, int, int, int] | None = None  # a Fill model's outpainting: pixels added (left, top, right, bottom)
    # Filled in by the engine: what made the image (never a local path).
    model: str | None = None        # the model's display name or repo id
    quantize: int | None = None     # bits of the quantized weights; None: full precision
    loras: tuple[LoraRef, ...] = ()  # the LoRAs applied (`set_loras`), in order
    mode: str | None = None          # one of MODES: what the image was made from

    def with_(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)

    @classmethod
    def of_call(cls, prompt: str | GenerationRequest, **options: Any) -> GenerationRequest:
        """The request behind an engine call in either style: `generate(request)`, or
        `generate(prompt, width=..., ...)`. Options beside a request are refused (they would be
        silently ignored otherwise); options left None are not given."""
        if not isinstance(prompt, GenerationRequest):
            return cls(prompt, **options)
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise InputError(f"pass {', '.join(given)} inside the request, not beside it")
        return prompt

    def check(self) -> GenerationRequest:
        """Raise InputError with a one-line reason if the engine cannot make this image."""
        if not isinstance(self.prompt, str):
            raise InputError(f"prompt must be text, not {type(self.prompt).__name__}")
        try:
            self.prompt.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates (a bad terminal or file encoding)
            raise InputError(f"prompt is not valid Unicode text (character {e.start + 1} cannot be encoded)") \
                from None
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 16 or value % 16):
                raise InputError(f"{name} must be a positive multiple of 16, not {value}")
        if self.steps is not None and (not _is_int(self.steps) or self.steps < 1):
            raise InputError(f"steps must be at least 1, not {self.steps}")
        if self.steps is not None and self.steps > MAX_STEPS:
            raise InputError(f"steps must be at most {MAX_STEPS}, not {self.steps}")
        if self.guidance is not None and (not _is_number(self.guidance) or not math.isfinite(self.guidance)):
            raise InputError(f"guidance must be a finite number, not {self.guidance}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < SEED_LIMIT):
            raise InputError(f"seed must be an integer from 0 to 2**64-1, not {self.seed}")
        if self.strength is not None and (not _is_number(self.strength) or not 0 < self.strength <= 1):
            raise InputError(f"strength must be more than 0 and at most 1, not {self.strength}")
        if self.expand is not None:
            sides = self.expand
            if not (isinstance(sides, (tuple, list)) and len(sides) == 4
                    and all(_is_int(v) and v >= 0 and v % 16 == 0 for v in sides)):
                raise InputError(f"expand must be four multiples of 16 (left, top, right, bottom), not {sides}")
            if not any(sides):
                raise InputError("expand adds nothing: give at least one side more than 0")
            if self.mask is not None:
                raise InputError("give a mask (inpaint) or expand (outpaint), not both")
        return self

    # --- the metadata schema ------------------------------------------------------------------

    def to_metadata(self) -> dict[str, Any]:
        """The JSON object stored in a PNG and in the history (see the module docstring)."""
        meta = asdict(self)
        meta["loras"] = [asdict(lora) for lora in self.loras]
        meta.update(schema=SCHEMA_VERSION, version=__version__)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> GenerationRequest:
        """The request stored in an image's metadata, of any schema version.

        A missing or unusable prompt raises InputError; any other field that is missing or of
        the wrong type is left at its default (an image from another tool, or a hand-edited
        file, still restores what it can). Unknown keys (a newer writer's) are ignored.
        """
        if not isinstance(meta, Mapping):
            raise InputError("the image's settings are not a JSON object")
        prompt = meta.get("prompt")
        if not isinstance(prompt, str):
            raise InputError("the image's settings have no prompt")
        values: dict[str, Any] = {"prompt": prompt[:MAX_PROMPT_CHARS]}
        for f in fields(cls):
            if f.name == "prompt" or f.name not in meta or meta[f.name] is None:
                continue
            value = _field_value(f.name, meta[f.name])
            if value is not None:
                values[f.name] = value
        return cls(**values)


_INTS = {"width", "height", "steps", "seed", "quantize"}


def _field_value(name: str, value: Any) -> Any:
    """`value` as field `name` holds it, or None when it cannot be (wrong type, out of range)."""
    value = _typed_value(name, value)
    if value is not None and name in _STORED_RANGES:
        low, high = _STORED_RANGES[name]
        return value if low <= value <= high else None
    return value


def _typed_value(name: str, value: Any) -> Any:
    if name in _INTS:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        return value if _is_int(value) and value >= 0 else None
    if name in ("image", "mask"):
        return ImageRef.from_metadata(value)
    if name == "expand":
        ok = isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_int(v) and 0 <= v <= 16384 for v in value)
        return tuple(int(v) for v in value) if ok else None
    if name == "mode":
        return value if value in MODES else None
    if name == "loras":
        if not isinstance(value, (list, tuple)):
            return None
        return tuple(ref for ref in map(LoraRef.from_metadata, value) if ref is not None)
    if name in ("guidance", "strength"):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        return float(value) if _is_number(value) and math.isfinite(value) else None
    return value if isinstance(value, str) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # numpy integers too


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
