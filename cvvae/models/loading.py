"""Loading diffusers model folders strictly: the right class, and every tensor present and used.

diffusers' ``from_pretrained`` warns about missing or unexpected tensors and carries on (with randomly
initialised or meta tensors that fail much later). Here both are errors that list the keys, and a folder
holding another model class is refused before anything is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A model folder that does not hold what its loader expects."""


def saved_class_name(folder: str | Path) -> str | None:
    """``_class_name`` of the folder's ``config.json`` (None when it does not say)."""
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text()).get("_class_name")
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None


def check_class(folder: str | Path, expected: Iterable[str], what: str) -> None:
    """Refuse a folder whose config names a class outside ``expected``."""
    expected = tuple(expected)
    name = saved_class_name(folder)
    if name is not None and name not in expected:
        raise CheckpointError(
            f"{folder} holds a {name}, not {what} ({' or '.join(expected)}); point the spec or the config "
            "at the right folder"
        )


def _preview(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_pretrained_strict(model_class: Any, folder: str | Path, **kwargs: Any) -> Any:
    """``model_class.from_pretrained(folder)``, refusing missing, unexpected or mis-shaped tensors."""
    model, info = model_class.from_pretrained(
        folder, output_loading_info=True, low_cpu_mem_usage=False, **kwargs
    )
    problems = [
        f"{label} tensor(s): {_preview(sorted(map(str, info.get(key) or [])))}"
        for key, label in (
            ("missing_keys", "missing"),
            ("unexpected_keys", "unexpected"),
            ("mismatched_keys", "mis-shaped"),
        )
        if info.get(key)
    ]
    if problems:
        raise CheckpointError(
            f"{folder} does not match {model_class.__name__}: {'; '.join(problems)}. The checkpoint is "
            "incomplete or belongs to another architecture (check config.json and the weights file)"
        )
    return model
