"""Facts about Hugging Face architectures that their configs do not state (``data/architectures.toml``)."""
from __future__ import annotations

from ..core.datafiles import SourcedConstants

ARCHITECTURES = SourcedConstants("models", "architectures.toml", "models")
