"""mlx-flux: FLUX.1 text-to-image, native on MLX."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["FluxPipeline", "GenerationRequest", "GenerationResult", "StepEvent", "__version__"]


def __getattr__(name: str):
    # The pipeline pulls in every model; keep `import mlx_flux.tokenizers` (and the request and
    # engine types, which need no MLX) light.
    if name == "FluxPipeline":
        from .pipeline import FluxPipeline

        return FluxPipeline
    if name == "GenerationRequest":
        from .request import GenerationRequest

        return GenerationRequest
    if name in ("GenerationResult", "StepEvent"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'mlx_flux' has no attribute {name!r}")
