"""One training/evaluation sample: a blurry RGB frame, its spike stream and optional ground truth.

Every dataset reader and the simulator produce this one type, so the engine, training and
evaluation never need to know where a sample came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np


@dataclass(frozen=True, eq=False)
class Sample:
    """A blurry frame with the spike frames around its exposure.

    Attributes:
        name: identifier, e.g. ``"pan/0003"`` (scene/sample).
        blur: (H, W, 3) uint8 **BGR** (as ``cv2.imread`` gives).
        spikes: (T, h, w) uint8 of 0/1, upright (any sensor flip already undone).
        exposure: (start, end) inclusive spike-frame indices covered by the RGB exposure.
        sharp: spike index -> (H, W, 3) uint8 BGR ground-truth sharp frame at that time.
    """

    name: str
    blur: np.ndarray
    spikes: np.ndarray
    exposure: tuple[int, int]
    sharp: Mapping[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        who = f"sample {self.name!r}"
        blur, spikes = self.blur, self.spikes
        if not isinstance(blur, np.ndarray) or blur.dtype != np.uint8 or blur.ndim != 3 or blur.shape[2] != 3:
            raise ValueError(f"{who}: blur must be (H, W, 3) uint8, got {_describe(blur)}")
        if not isinstance(spikes, np.ndarray) or spikes.dtype != np.uint8 or spikes.ndim != 3:
            raise ValueError(f"{who}: spikes must be (T, h, w) uint8, got {_describe(spikes)}")
        if spikes.shape[0] == 0:
            raise ValueError(f"{who}: spikes hold no frames")
        if spikes.size and int(spikes.max()) > 1:
            raise ValueError(f"{who}: spikes must be 0/1, found value {int(spikes.max())}")
        try:
            start, end = (int(v) for v in self.exposure)
        except (TypeError, ValueError):
            raise ValueError(f"{who}: exposure must be a pair (start, end), got {self.exposure!r}") from None
        last = spikes.shape[0] - 1
        if not 0 <= start <= end <= last:
            raise ValueError(
                f"{who}: exposure {start}..{end} must satisfy 0 <= start <= end <= {last} (T={spikes.shape[0]})"
            )
        object.__setattr__(self, "exposure", (start, end))
        sharp: dict[int, np.ndarray] = {}
        for index, image in self.sharp.items():
            if not 0 <= int(index) <= last:
                raise ValueError(f"{who}: sharp frame at spike index {index} is outside 0..{last}")
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != blur.shape:
                raise ValueError(
                    f"{who}: sharp frame {index} must be {blur.shape} uint8 like the blur, got {_describe(image)}"
                )
            sharp[int(index)] = image
        object.__setattr__(self, "sharp", MappingProxyType(dict(sorted(sharp.items()))))

    @property
    def num_frames(self) -> int:
        """T, the number of spike frames."""
        return int(self.spikes.shape[0])

    @property
    def spike_size(self) -> tuple[int, int]:
        """(h, w) of one spike frame."""
        return int(self.spikes.shape[1]), int(self.spikes.shape[2])

    @property
    def blur_size(self) -> tuple[int, int]:
        """(H, W) of the RGB image."""
        return int(self.blur.shape[0]), int(self.blur.shape[1])

    @property
    def exposure_frames(self) -> int:
        """Number of spike frames inside the exposure (end - start + 1)."""
        return self.exposure[1] - self.exposure[0] + 1


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
