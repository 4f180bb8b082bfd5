"""UIDs and names used by the Verification service.

Plain strings, so the hot path and the CLI's start-up never import pydicom;
`uid_name()` asks pydicom's dictionary lazily, and the tests check every
constant here against it.
"""

from __future__ import annotations

from functools import lru_cache

from asyncecho._version import __version__

# PS3.7 Annex A.2.1: the DICOM Application Context Name.
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

# The order pynetdicom's echoscu proposes them in (the CLI specification).
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
)

# A UUID-derived UID (PS3.5 B.2), so no organisation root is needed.
IMPLEMENTATION_CLASS_UID = "2.25.75843839914556087020652420846730373252"
IMPLEMENTATION_VERSION_NAME = "ASYNCECHO_" + __version__.replace(".", "")[:6]

_FALLBACK_NAMES = {
    APPLICATION_CONTEXT: "DICOM Application Context Name",
    VERIFICATION: "Verification SOP Class",
    IMPLICIT_VR_LE: "Implicit VR Little Endian",
    EXPLICIT_VR_LE: "Explicit VR Little Endian",
    DEFLATED_EXPLICIT_VR_LE: "Deflated Explicit VR Little Endian",
    EXPLICIT_VR_BE: "Explicit VR Big Endian",
}


@lru_cache(maxsize=256)
def uid_name(uid: str) -> str:
    """The standard's name for `uid`, or the UID itself when it has none."""
    try:
        from pydicom.uid import UID
    except ImportError:  # pragma: no cover - pydicom is a dependency
        return _FALLBACK_NAMES.get(uid, uid)
    name = UID(uid).name
    return str(name) if name else uid


def known_uid_name(uid: str) -> str:
    """The name for one of the UIDs above without importing pydicom."""
    return _FALLBACK_NAMES.get(uid, uid)
