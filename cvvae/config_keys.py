"""One rule for every config mapping of the project: an unknown key is an error that lists the valid ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def reject_unknown_keys(data: Mapping[str, Any], valid: Iterable[str], where: str) -> None:
    """Raise ``ValueError`` naming ``where``, the unknown keys and the valid keys (in declaration order)."""
    valid = list(valid)
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")
