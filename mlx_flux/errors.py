"""Errors the user can act on. Each carries a one-line message fit for a terminal or a dialog."""


class FluxError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class ModelNotFoundError(FluxError):
    """A model path or repository id that does not exist (locally or on the hub)."""


class GatedRepoError(FluxError):
    """A hub repository that needs its licence accepted and a token."""


class Cancelled(FluxError):
    """Raised from a step callback to stop a generation between steps."""


class NonFiniteError(FluxError):
    """The model produced NaN or infinite values (corrupt weights, usually): no image is written."""
