"""Results that are replaced all at once or not at all.

A job that writes into ``results/<profile>/`` (a notebook, the report) writes into a private staging folder
that mirrors the results folder instead; only when the job succeeds are its files moved into place, each with
an atomic rename. A job that fails part-way therefore leaves every earlier table, figure, notebook and README
exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING_DIR = ".staging"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def publish(staging: Path, destination: Path) -> list[Path]:
    """Move every file under ``staging`` to the same relative place under ``destination``."""
    moved = []
    for source in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = destination / source.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        moved.append(target)
    return moved


@contextmanager
def staged_results(results_dir: str | Path, job: str) -> Iterator[Path]:
    """A folder to write ``results_dir``'s new files into; published only if the block raises nothing.

    The staging folder lives inside ``results_dir`` (same file system, so the final moves are renames) and
    is removed in either case.
    """
    results_dir = Path(results_dir)
    staging = results_dir / STAGING_DIR / job
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        publish(staging, results_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # another job may still be staging
            (results_dir / STAGING_DIR).rmdir()
