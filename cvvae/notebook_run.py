"""`cvvae notebook`: execute study notebooks with papermill, publishing their outputs only on success.

    cvvae notebook --config config/ci.yaml --results results/ci                 # every notebook
    cvvae notebook 02_regularization_ablation --config config/default.yaml --results results/default

A notebook gets the profile's ``notebooks.common`` and ``notebooks.<name>`` mappings as papermill parameters,
plus ``profile``, ``config_path`` and ``results_dir``. Its executed copy, tables and figures are written to a
staging folder (``cvvae.staging``) and moved into ``<results>/notebooks``, ``tables`` and ``figures`` only
when every cell ran: a failing notebook leaves the previous results as they were.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cvvae.notebook_utils import OUTPUT_DIR_ENV, find_repo_root
from cvvae.profile import notebook_parameter_names
from cvvae.staging import staged_results


def available_notebooks(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "notebooks").glob("*.ipynb"))


def notebook_parameters(
    profile: Mapping[str, Any], notebook: str, accepted: list[str] | None = None
) -> dict[str, Any]:
    """The profile's ``notebooks.common`` (only the keys the notebook has, when ``accepted`` lists them)
    merged with ``notebooks.<notebook>``."""
    section = profile.get("notebooks") or {}
    common = {k: v for k, v in (section.get("common") or {}).items() if accepted is None or k in accepted}
    return {**common, **(section.get(notebook) or {})}


def run_notebook(
    notebook: str,
    config_path: str | Path,
    results_dir: str | Path,
    profile: Mapping[str, Any],
    root: Path | None = None,
) -> Path:
    """Execute ``notebooks/<notebook>.ipynb`` for ``profile``; return the published executed copy."""
    import papermill

    root = root or find_repo_root()
    source = root / "notebooks" / f"{notebook}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"no notebook {source}; choose one of {available_notebooks(root)}")
    results_dir = Path(results_dir)
    parameters = {
        "profile": profile["profile"],
        "config_path": str(config_path),
        "results_dir": str(results_dir),
        **notebook_parameters(profile, notebook, notebook_parameter_names(source)),
    }
    with staged_results(results_dir, f"notebook_{notebook}") as staging:
        executed = staging / "notebooks" / f"{notebook}.ipynb"
        executed.parent.mkdir(parents=True)
        previous = os.environ.get(OUTPUT_DIR_ENV)
        os.environ[OUTPUT_DIR_ENV] = str(staging.resolve())  # the kernel inherits it
        try:
            papermill.execute_notebook(
                str(source),
                str(executed),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(root),
                progress_bar=False,
            )
        finally:
            if previous is None:
                os.environ.pop(OUTPUT_DIR_ENV, None)
            else:
                os.environ[OUTPUT_DIR_ENV] = previous
    return results_dir / "notebooks" / f"{notebook}.ipynb"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="notebook names (default: all)")
    parser.add_argument("--config", required=True, type=Path, help="profile YAML, e.g. config/default.yaml")
    parser.add_argument("--results", required=True, type=Path, help="results folder, e.g. results/default")


def run(args: argparse.Namespace) -> int:
    from cvvae.profile import load_profile

    root = find_repo_root()
    profile = load_profile(args.config)
    names = args.notebooks or available_notebooks(root)
    unknown = sorted(set(names) - set(available_notebooks(root)))
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; choose from {available_notebooks(root)}")
    for name in names:
        print(f"{name}: {run_notebook(name, args.config, args.results, profile, root)}")
    return 0
