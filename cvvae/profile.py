"""The one loader of study profiles (``config/<profile>.yaml``): read, override, validate.

Every entry point (the Snakefile, ``cvvae train``, ``evaluate``, ``data``, ``report``, ``notebook`` and the
notebooks) reads a profile through :func:`load_profile`, so a typo fails the same way everywhere, before any
work starts, with the offending key and the valid keys named.

Validation has two layers with one owner per key:

- ``cvvae/profile_schema.yaml`` (JSON Schema) owns the structure: the top-level keys, ``data``, ``protocols``,
  ``evaluate``, ``notebooks`` and ``workflow``;
- the code owns the sections it defines: the training dataclasses (``cvvae.train.config``), ``data.embedded``
  (``cvvae.data.embedded``), protocol fields (``ClipProtocol``), model specs (``cvvae.models.zoo.parse_spec``)
  and notebook parameters (the ``parameters`` cell of each notebook).
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

# Parameters every notebook receives from the runner (cvvae.notebook_run), never from a profile.
RUNNER_PARAMETERS = ("profile", "config_path", "results_dir")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file, the key and what is allowed."""


@functools.cache
def schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("cvvae").joinpath("profile_schema.yaml").read_text())


# ----------------------------------------------------------------------------------------------------
# --set overrides


def apply_overrides(config: dict[str, Any], overrides: Iterable[str] | None) -> dict[str, Any]:
    """Apply ``dotted.key=value`` strings to a copy of ``config``; values are parsed as YAML (``1e-4``,
    ``[1, 4]``, ``none``). List items are addressed by index (``cvvae.train.mixture.0.batch_size=2``).

    New keys are allowed here (a variant may set a key its base omits); whether a key is valid is decided by
    validation of the result, which names the valid keys.
    """
    out = copy.deepcopy(config)
    for item in overrides or []:
        if "=" not in item:
            raise ProfileError(f"--set expects dotted.key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ProfileError(f"--set {item!r}: the value is not valid YAML ({exc.problem})") from None
        node: Any = out
        parts = key.strip().split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ProfileError(f"--set {item!r}: {part!r} is not an index of a {len(node)}-item list")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:
                        node[part] = {}
                    node = node[part]
            else:
                raise ProfileError(f"--set {item!r}: cannot descend into {part!r} (not a mapping or list)")
    return out


# ----------------------------------------------------------------------------------------------------
# Structure (JSON Schema)


def _key_path(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "top level"


def schema_errors(profile: Mapping[str, Any]) -> list[str]:
    """Readable schema violations: unknown keys list the valid ones."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    messages = []
    for error in sorted(validator.iter_errors(profile), key=lambda e: list(map(str, e.absolute_path))):
        where = _key_path(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            allowed = list((error.schema.get("properties") or {}).keys())
            unknown = sorted(set(error.instance) - set(allowed))
            messages.append(f"unknown key(s) {unknown} at {where}; valid keys: {', '.join(allowed)}")
        else:
            messages.append(f"{where}: {error.message}")
    return messages


def check_known_keys(profile: Mapping[str, Any], where: str = "profile") -> None:
    """Unknown top-level and ``data`` keys, for code that reads a partial profile (the trainers' tests and
    tools use training-only profiles); complete profiles get :func:`check_structure` as well."""
    properties = schema()["properties"]
    for section, valid, values in (
        ("top level", properties, profile),
        ("data", properties["data"]["properties"], profile.get("data") or {}),
    ):
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ProfileError(
                f"{where}: unknown key(s) {unknown} at {section}; valid keys: {', '.join(valid)}"
            )


def check_structure(profile: Mapping[str, Any], where: str = "profile") -> None:
    """Raise :class:`ProfileError` if ``profile`` violates the schema."""
    if not isinstance(profile, Mapping):
        raise ProfileError(f"{where}: a profile is a YAML mapping, got {type(profile).__name__}")
    errors = schema_errors(profile)
    if errors:
        raise ProfileError(f"{where}: " + "; ".join(errors))


# ----------------------------------------------------------------------------------------------------
# Sections the code owns


def notebook_parameter_names(path: Path) -> list[str]:
    """Variables assigned in the notebook's cell tagged ``parameters``."""
    book = json.loads(path.read_text())
    for cell in book.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            names = []
            for node in ast.parse(source).body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names += [t.id for t in targets if isinstance(t, ast.Name)]
            return names
    raise ProfileError(f"{path} has no cell tagged 'parameters'")


def _check_notebooks(section: Mapping[str, Any], notebooks_dir: Path | None) -> list[str]:
    if notebooks_dir is None or not notebooks_dir.is_dir():
        return []  # a profile used outside the repository: no notebooks to run
    params = {p.stem: notebook_parameter_names(p) for p in sorted(notebooks_dir.glob("*.ipynb"))}
    errors = []
    for name, values in section.items():
        keys = list((values or {}).keys())
        if name != "common" and name not in params:
            errors.append(
                f"notebooks.{name}: no notebook {notebooks_dir / name}.ipynb; notebooks: {sorted(params)}"
            )
            continue
        valid = sorted({k for v in params.values() for k in v}) if name == "common" else params[name]
        valid = [k for k in valid if k not in RUNNER_PARAMETERS]
        unknown = [k for k in keys if k not in valid]
        if unknown:
            errors.append(f"notebooks.{name}: unknown parameter(s) {unknown}; valid: {', '.join(valid)}")
    return errors


def _check_kwargs(
    values: Mapping[str, Any], function: Any, where: str, exclude: Iterable[str] = ()
) -> list[str]:
    """Keys of ``values`` that ``function`` does not take as keyword arguments."""
    signature = inspect.signature(function)
    valid = [n for n, p in signature.parameters.items() if p.kind is not p.VAR_KEYWORD and n not in exclude]
    unknown = sorted(set(values) - set(valid))
    return [f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}"] if unknown else []


def _collect(errors: list[str], check: Any, *args: Any) -> None:
    try:
        check(*args)
    except (ValueError, TypeError) as exc:
        errors.append(str(exc))


def section_errors(profile: Mapping[str, Any], notebooks_dir: Path | None = None) -> list[str]:
    """Violations inside the sections whose keys the code defines (the schema passed already)."""
    from cvvae.data.embedded import EmbeddedDataConfig
    from cvvae.data.protocols import ClipProtocol
    from cvvae.models.zoo import parse_spec
    from cvvae.train import config as train_config

    errors: list[str] = []
    data = profile.get("data") or {}
    _collect(errors, EmbeddedDataConfig.from_mapping, data.get("embedded"))
    for name, fields in (profile.get("protocols") or {}).items():
        values = {k: v for k, v in fields.items() if k != "dataset"}
        _collect(errors, lambda n=name, v=values: ClipProtocol(name=n, **v))
    if profile.get("image_vae") is not None:
        _collect(errors, train_config.resolve_image_vae_config, profile)
        from diffusers import AutoencoderKL

        model = (profile["image_vae"] or {}).get("model") or {}
        errors += _check_kwargs(model, AutoencoderKL.__init__, "image_vae.model", exclude=("self",))
    if profile.get("cvvae") is not None:
        _collect(errors, train_config.resolve_cvvae_config, profile)
        from cvvae.models import CVVAEModel
        from cvvae.models.inflate import inflate_from_image_vae

        model = (profile["cvvae"] or {}).get("model") or {}
        valid = {*inspect.signature(inflate_from_image_vae).parameters} - {"vae", "config_overrides"}
        errors += _check_kwargs(
            {k: v for k, v in model.items() if k not in valid}, CVVAEModel.__init__, "cvvae.model", ("self",)
        )
    if profile.get("ldm") is not None:
        from cvvae.ldm.config import ldm_section_errors

        errors += ldm_section_errors(profile)
    evaluate = profile.get("evaluate") or {}
    models = evaluate.get("models") or {}
    for name, spec in models.items():
        _collect(errors, lambda s=spec, n=name: _parse_named_spec(parse_spec, s, n))
    for protocol, names in (evaluate.get("matrix") or {}).items():
        unknown = [m for m in names if m not in models]
        if unknown:
            errors.append(
                f"evaluate.matrix.{protocol}: unknown model(s) {unknown}; evaluate.models: {list(models)}"
            )
    unknown = sorted(set(evaluate.get("model_args") or {}) - set(models))
    if unknown:
        errors.append(f"evaluate.model_args: unknown model(s) {unknown}; evaluate.models: {list(models)}")
    errors += _check_notebooks(profile.get("notebooks") or {}, notebooks_dir)
    variants = (profile.get("cvvae") or {}).get("variants") or {}
    unknown = [v for v in (profile.get("workflow") or {}).get("variants", []) if v not in variants]
    if unknown:
        errors.append(
            f"workflow.variants: {unknown} are not defined under cvvae.variants ({sorted(variants)})"
        )
    return errors


class ImageVAELocation(NamedTuple):
    """Where a profile's frozen image VAE lives: ``path`` ("" when there is none) and ``subfolder``."""

    path: str
    subfolder: str | None

    @property
    def folder(self) -> Path:
        return Path(self.path) / (self.subfolder or "")

    @property
    def spec(self) -> str | None:
        """The zoo spec (``image_vae:PATH[?subfolder=NAME]``), or None when there is no image VAE."""
        if not self.path:
            return None
        return f"image_vae:{self.path}" + (f"?subfolder={self.subfolder}" if self.subfolder else "")


def frozen_image_vae(profile: Mapping[str, Any], runs_dir: str | Path | None = None) -> ImageVAELocation:
    """The frozen image VAE of ``profile`` (the CV-VAEs' regularisation target and compatibility reference).

    A profile that pretrains its own (``workflow.train_image_vae``) finds it in ``<runs_dir>/image_vae/final``
    when ``runs_dir`` is given (the workflow, whose results folder may be overridden); otherwise
    ``cvvae.image_vae_path`` and ``cvvae.image_vae_subfolder`` name it.
    """
    if runs_dir is not None and (profile.get("workflow") or {}).get("train_image_vae"):
        return ImageVAELocation(f"{runs_dir}/image_vae/final", None)
    section = profile.get("cvvae") or {}
    return ImageVAELocation(section.get("image_vae_path") or "", section.get("image_vae_subfolder"))


def spec_run(spec: str) -> str | None:
    """The training run of the profile that a model spec reads (``cvvae:{runs}/dec/final`` -> ``dec``), or
    None for weights from elsewhere (released checkpoints)."""
    from cvvae.models.zoo import parse_spec

    path = parse_spec(spec).get("path") or ""
    if not path.startswith("{runs}/"):
        return None
    return path[len("{runs}/") :].split("/", 1)[0]


def model_runs(profile: Mapping[str, Any]) -> dict[str, str]:
    """Model name -> the training run it is evaluated from, for every model the profile trains."""
    models = (profile.get("evaluate") or {}).get("models") or {}
    return {name: run for name, spec in models.items() if (run := spec_run(spec)) is not None}


def _parse_named_spec(parse_spec: Any, spec: str, name: str) -> None:
    try:
        parse_spec(spec.replace("{runs}", "runs"))
    except ValueError as exc:
        raise ValueError(f"evaluate.models.{name}: {exc}") from None


def validate_profile(
    profile: Mapping[str, Any], where: str = "profile", notebooks_dir: Path | None = None
) -> None:
    """Raise :class:`ProfileError` listing every problem of ``profile`` (structure first)."""
    check_structure(profile, where)
    errors = section_errors(profile, notebooks_dir)
    if errors:
        raise ProfileError(f"{where}: " + "; ".join(errors))


def _default_notebooks_dir(path: Path) -> Path | None:
    """``notebooks/`` beside ``config/`` when the profile lives in a checkout of this repository."""
    for folder in [path.resolve().parent, *path.resolve().parents]:
        if (folder / "Snakefile").is_file() and (folder / "notebooks").is_dir():
            return folder / "notebooks"
    return None


def read_profile(path: str | Path) -> dict[str, Any]:
    """The YAML of a profile as a dict (not validated), with a clear error when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"profile {path} not found; pass an existing YAML, e.g. config/default.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"profile {path} must be a YAML mapping at the top level")
    return data


def load_profile(
    path: str | Path, overrides: Iterable[str] | None = None, notebooks_dir: Path | None = None
) -> dict[str, Any]:
    """Read ``path``, apply ``--set`` overrides and validate the result; return it as a dict."""
    path = Path(path)
    profile = apply_overrides(read_profile(path), overrides)
    validate_profile(profile, str(path), notebooks_dir or _default_notebooks_dir(path))
    return profile
