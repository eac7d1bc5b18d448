"""A simulated spike camera watching sharp frames: the pure core of the simulator.

One sample = ``frames_per_sample`` (137) consecutive sharp frames at the spike rate: the blurry
image is the mean of the exposure frames 20..116 (97 frames, the paper's blur model B = mean of
the latent frames), the spikes come from an integrate-and-fire camera watching the grey frames
downsampled to 1/4 per side, and chosen frames are kept as ground truth. It lives in capture/
because the simulated camera is a source like any other (``sim:`` URIs); ``tools/simulate.py``
writes datasets with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from spikereveal.capture.datasets import GOPRO_EXPOSURE, GOPRO_FRAMES_PER_SAMPLE
from spikereveal.capture.sample import Sample
from spikereveal.capture.spike_camera import DEFAULT_INCREMENT_PER_FRAME, SpikeCamera, bgr_to_grey
from spikereveal.stream.errors import SpikeRevealError

# Bumped when the output of the same config changes (renderer, camera model, file layout).
GENERATOR_REVISION = 1
# The five times the paper's LDN training and evaluation use (exposure start, quarters, end).
PAPER_SHARP_TIMES = (20, 44, 68, 92, 116)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that decides the simulated data (sizes, sensor, randomness, ground truth).

    Attributes:
        spike_size: (h, w) of the spike frames; the blur is ``scale`` times larger per side.
        vth: spike threshold in paper units (1, 2, 4).
        noise_prob: spurious spike probability per pixel per frame (the paper uses ~0.007).
        seed: seed of the camera's initial charge and noise.
        sharp_times: spike indices at which ground truth is kept; None keeps every frame.
        frames_per_sample: spike frames per sample (137 in GOPRO-spike).
        exposure: inclusive spike-frame range averaged into the blur (20..116).
        scale: RGB pixels per spike pixel per side.
        increment_per_frame: camera charge per frame at grey 1.0 (code units, threshold 2 * vth).
    """

    spike_size: tuple[int, int] = (64, 96)
    vth: float = 1.0
    noise_prob: float = 0.0
    seed: int = 0
    sharp_times: tuple[int, ...] | None = PAPER_SHARP_TIMES
    frames_per_sample: int = GOPRO_FRAMES_PER_SAMPLE
    exposure: tuple[int, int] = GOPRO_EXPOSURE
    scale: int = 4
    increment_per_frame: float = DEFAULT_INCREMENT_PER_FRAME

    def __post_init__(self) -> None:
        h, w = self.spike_size
        if h < 1 or w < 1:
            raise ValueError(f"spike size {h}x{w} must be positive")
        if (h * w) % 8:
            raise ValueError(f"spike size {h}x{w}: h*w must be a multiple of 8 (whole bytes per .dat frame)")
        if self.scale < 1:
            raise ValueError(f"scale {self.scale} must be >= 1")
        if self.vth <= 0:
            raise ValueError(f"vth {self.vth} must be > 0")
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ValueError(f"noise probability {self.noise_prob} must lie in [0, 1]")
        start, end = self.exposure
        if not 0 <= start <= end < self.frames_per_sample:
            raise ValueError(f"exposure {start}..{end} must lie inside 0..{self.frames_per_sample - 1}")
        if self.sharp_times is not None:
            bad = [t for t in self.sharp_times if not 0 <= t < self.frames_per_sample]
            if bad:
                raise ValueError(
                    f"sharp times {', '.join(map(str, bad))} are outside 0..{self.frames_per_sample - 1}"
                )
            object.__setattr__(self, "sharp_times", tuple(sorted(set(self.sharp_times))))

    @property
    def blur_size(self) -> tuple[int, int]:
        """(H, W) of the RGB frames: ``scale`` x the spike size."""
        return self.spike_size[0] * self.scale, self.spike_size[1] * self.scale

    def new_camera(self) -> SpikeCamera:
        """A fresh camera for one scene (one continuous stream)."""
        return SpikeCamera(
            threshold=self.vth,
            increment_per_frame=self.increment_per_frame,
            seed=self.seed,
            noise_prob=self.noise_prob,
        )


class IncompleteSampleError(SpikeRevealError):
    """The frame source ran out in the middle of a sample."""

    def __init__(self, frames: int, needed: int) -> None:
        super().__init__(f"the source ended after {frames} frames of a sample that needs {needed}")
        self.frames = frames
        self.needed = needed


def simulate_sample(
    frames: Iterable[np.ndarray], camera: SpikeCamera, config: SimulationConfig, name: str = "sample"
) -> Sample:
    """Turn ``config.frames_per_sample`` sharp frames into one ``Sample`` (pure, no I/O).

    Args:
        frames: (H, W, 3) uint8 BGR frames at the spike rate, H x W = ``config.blur_size``;
            consumed one at a time, so long sources need not fit in memory.
        camera: the scene's spike camera; its charge carries on into the next sample.
        config: sizes, exposure and ground-truth times.

    Returns:
        A ``Sample`` whose blur is the rounded float mean of the exposure frames, whose spikes are
        (frames_per_sample, h, w) uint8, and whose ``sharp`` holds the frames at ``sharp_times``.
    """
    blur_hw = config.blur_size
    h, w = config.spike_size
    start, end = config.exposure
    keep = set(range(config.frames_per_sample)) if config.sharp_times is None else set(config.sharp_times)
    total = np.zeros((*blur_hw, 3), dtype=np.float64)
    spikes = np.empty((config.frames_per_sample, h, w), dtype=np.uint8)
    sharp: dict[int, np.ndarray] = {}
    count = 0
    for t, frame in enumerate(itertools.islice(frames, config.frames_per_sample)):
        if frame.dtype != np.uint8 or frame.shape != (*blur_hw, 3):
            raise ValueError(
                f"{name}: frame {t} is {frame.dtype} {frame.shape}, expected uint8 {(*blur_hw, 3)} (BGR)"
            )
        if start <= t <= end:
            total += frame
        # Grey first (one channel), then INTER_AREA: a box average, like a sensor pixel's area.
        grey = cv2.resize(bgr_to_grey(frame), (w, h), interpolation=cv2.INTER_AREA)
        spikes[t] = camera.step(grey)
        if t in keep:
            sharp[t] = np.array(frame, copy=True)
        count = t + 1
    if count < config.frames_per_sample:
        raise IncompleteSampleError(count, config.frames_per_sample)
    blur = np.clip(np.rint(total / (end - start + 1)), 0, 255).astype(np.uint8)
    return Sample(name=name, blur=blur, spikes=spikes, exposure=(start, end), sharp=sharp)
