"""Versions of everything that changes an encoding, for the schema fingerprint.

Bump NORMALISER_VERSION whenever a normaliser's output can change for some
input, and ENCODING_VERSION whenever the bits an encoder sets can change.
"""

from __future__ import annotations

from importlib import metadata

NORMALISER_VERSION = "1"
ENCODING_VERSION = "3"  # 2: 16-bit position words for power-of-two filter lengths; 3: AES-256-CMAC


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # pragma: no cover - both are hard dependencies
        return "absent"


def component_versions() -> dict[str, str]:
    """What the fingerprint records besides the schema itself."""
    return {
        "normaliser": NORMALISER_VERSION,
        "encoding": ENCODING_VERSION,
        "pinyin_table": f"pypinyin-{_dist_version('pypinyin')}",
        "traditional_table": f"opencc-{_dist_version('opencc')}",
    }
