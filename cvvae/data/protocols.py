"""Named reconstruction protocols: which frames, at what size, cropped how.

The paper evaluates video reconstruction on 33-frame clips at frame stride 3, resized and centre-cropped to
256x256 (images: 256x256). Small profiles use smaller named protocols and may register their own from config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from cvvae.config_keys import reject_unknown_keys
from cvvae.data.datasets import ImageDataset, VideoClipDataset


@dataclass(frozen=True)
class ClipProtocol:
    """How evaluation clips are taken from a dataset."""

    name: str
    num_frames: int
    stride: int
    resolution: int
    crop: Literal["center", "random"] = "center"

    def __post_init__(self) -> None:
        from cvvae.models.frames import check_num_frames

        check_num_frames(self.num_frames)
        if self.stride < 1 or self.resolution < 8:
            raise ValueError(f"protocol {self.name!r}: need stride >= 1 and resolution >= 8, got {self}")
        if self.crop not in ("center", "random"):
            raise ValueError(f"protocol {self.name!r}: crop must be 'center' or 'random', got {self.crop!r}")

    @property
    def is_image(self) -> bool:
        return self.num_frames == 1

    def dataset(
        self,
        manifest_csv: str | Path,
        split: str | None = "val",
        *,
        root: str | Path | None = None,
        seed: int = 0,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> VideoClipDataset | ImageDataset:
        """The manifest's clips (or images, for a one-frame protocol) under this protocol.

        Evaluation raises on bad files by default; video clips start at the first frame."""
        if self.is_image:
            return ImageDataset.from_manifest(
                manifest_csv, split, self.resolution, self.crop, seed, on_error, root=root
            )
        return VideoClipDataset.from_manifest(
            manifest_csv,
            split,
            self.num_frames,
            self.stride,
            self.resolution,
            self.crop,
            seed,
            on_error,
            root=root,
            start="first",
        )

    def describe(self) -> str:
        """One line for table captions, e.g. ``paper: 33 frames, stride 3, 256x256 (short-side resize, centre
        crop)``."""
        crop = "centre crop" if self.crop == "center" else "random crop"
        frames = "images" if self.is_image else f"{self.num_frames} frames, stride {self.stride}"
        return f"{self.name}: {frames}, {self.resolution}x{self.resolution} (short-side resize, {crop})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROTOCOLS: dict[str, ClipProtocol] = {
    "paper": ClipProtocol("paper", num_frames=33, stride=3, resolution=256),
    "paper_image": ClipProtocol("paper_image", num_frames=1, stride=1, resolution=256),
    "small": ClipProtocol("small", num_frames=17, stride=1, resolution=64),
    "small_long": ClipProtocol("small_long", num_frames=33, stride=1, resolution=64),
    "small_image": ClipProtocol("small_image", num_frames=1, stride=1, resolution=64),
    "ci": ClipProtocol("ci", num_frames=9, stride=1, resolution=32),
}
"""Built-in protocols; ``paper`` is Sec. 4.2 of the paper (WebVid val), ``paper_image`` its COCO setting."""


def register_protocol(protocol: ClipProtocol | Mapping[str, Any], *, overwrite: bool = False) -> ClipProtocol:
    """Add a protocol to :data:`PROTOCOLS` (from a ``ClipProtocol`` or a mapping of its fields)."""
    if not isinstance(protocol, ClipProtocol):
        reject_unknown_keys(protocol, ClipProtocol.__dataclass_fields__, "protocol")
        protocol = ClipProtocol(**protocol)
    existing = PROTOCOLS.get(protocol.name)
    if existing is not None and existing != protocol and not overwrite:
        raise ValueError(
            f"protocol {protocol.name!r} already exists as {existing}; "
            "choose another name or pass overwrite=True"
        )
    PROTOCOLS[protocol.name] = protocol
    return protocol


def protocols_from_config(section: Mapping[str, Mapping[str, Any]]) -> dict[str, ClipProtocol]:
    """Register a profile's ``protocols: {name: {num_frames, stride, resolution, crop}}`` mapping."""
    registered = {}
    for name, fields in section.items():
        registered[name] = register_protocol({"name": name, **dict(fields)}, overwrite=True)
    return registered


def get_protocol(name: str) -> ClipProtocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))} (or pass --config with a profile "
            "that defines it)"
        ) from None
