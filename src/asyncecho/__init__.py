"""asyncecho: DICOM Verification (C-ECHO) at scale on one event loop."""

from ._version import __version__

__all__ = ["__version__"]
