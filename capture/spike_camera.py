"""An integrate-and-fire spike camera simulator (NumPy, no torch).

Each pixel integrates light into a charge; when the charge reaches the threshold the pixel
emits a spike (bit 1 in that read-out frame) and the threshold is subtracted, keeping the
remainder. Threshold convention (the paper's and the official simulator's): ``threshold`` is
Vth in paper units (1, 2, 4); per spike frame a pixel of grey level g (0..1) gains
``increment_per_frame * g`` (1.985 g by default) against a code threshold of ``2 * Vth``. So at
Vth = 1 a white pixel fires on ~99 % of frames, and Vth = 2 and 4 halve and quarter the rate:

    firing rate per frame ~= increment_per_frame * g / (2 * Vth)

The sensor reads each pixel out once per frame, so a pixel fires at most once per frame; charge
beyond one threshold (only possible when increment_per_frame * g > 2 * Vth) is capped at the
threshold so that a saturated pixel fires every frame instead of accumulating without bound.
"""

from __future__ import annotations

import math

import numpy as np

# Charge gained per frame by a white pixel (grey 1.0) in the official simulator's code units.
DEFAULT_INCREMENT_PER_FRAME = 1.985
# Code threshold = CODE_UNITS_PER_VTH * Vth ("Vth = 2 (1 in truth)" in the official code).
CODE_UNITS_PER_VTH = 2.0


class SpikeCamera:
    """A seeded, stateful integrate-and-fire spike sensor.

    The first frame fixes the sensor size and draws each pixel's initial charge uniformly in
    ``[0, code threshold)``: a real sensor starts at an arbitrary phase, and a common phase would
    make all pixels of equal brightness fire in lockstep. The charge persists across ``step``
    and ``integrate`` calls (a continuous stream); ``reset`` starts over with the same seed.

    Args:
        threshold: Vth in paper units (> 0; 1, 2 and 4 are the studied values).
        increment_per_frame: charge gained per frame at grey 1.0, in code units.
        seed: seed of the generator for the initial charge and the noise spikes.
        noise_prob: probability of a spurious spike per pixel per frame (the paper uses ~0.007).
            Noise spikes are OR-ed onto the output and do not discharge the pixel.
    """

    def __init__(
        self,
        threshold: float = 1.0,
        increment_per_frame: float = DEFAULT_INCREMENT_PER_FRAME,
        seed: int | None = 0,
        noise_prob: float = 0.0,
    ) -> None:
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold (Vth): {threshold!r} must be a finite number > 0")
        if not (math.isfinite(increment_per_frame) and increment_per_frame > 0):
            raise ValueError(f"increment_per_frame: {increment_per_frame!r} must be a finite number > 0")
        if not (0.0 <= noise_prob <= 1.0):
            raise ValueError(f"noise_prob: {noise_prob!r} must lie in [0, 1]")
        self.threshold = float(threshold)
        self.increment_per_frame = float(increment_per_frame)
        self.seed = seed
        self.noise_prob = float(noise_prob)
        self.reset()

    @property
    def code_threshold(self) -> float:
        """The threshold in charge units: 2 * Vth."""
        return CODE_UNITS_PER_VTH * self.threshold

    @property
    def charge(self) -> np.ndarray | None:
        """A copy of the (h, w) float64 charge, or None before the first frame."""
        return None if self._charge is None else self._charge.copy()

    @property
    def frames_seen(self) -> int:
        """Number of frames integrated since construction or ``reset``."""
        return self._frames

    def expected_rate(self, grey: float) -> float:
        """Mean spikes per frame for a constant grey level (without noise, before saturation)."""
        return min(1.0, self.increment_per_frame * max(grey, 0.0) / self.code_threshold)

    def reset(self) -> None:
        """Forget the charge and restart the random generator from the seed."""
        self._rng = np.random.default_rng(self.seed)
        self._charge: np.ndarray | None = None
        self._frames = 0

    def step(self, grey: np.ndarray) -> np.ndarray:
        """Integrate one frame of light and read the sensor out.

        Args:
            grey: (h, w) float grey level, 0..1 (values below 0 count as 0).

        Returns:
            (h, w) uint8 spike frame of 0/1.
        """
        grey = np.asarray(grey)
        if grey.ndim != 2:
            raise ValueError(f"grey frame must be 2-D (h, w), got shape {grey.shape}")
        if self._charge is None:
            self._charge = self._rng.uniform(0.0, self.code_threshold, size=grey.shape)
        elif grey.shape != self._charge.shape:
            raise ValueError(
                f"grey frame of shape {grey.shape} does not match the sensor {self._charge.shape}"
            )
        if not np.all(np.isfinite(grey)):
            raise ValueError("grey frame holds NaN or infinite values")
        thr = self.code_threshold
        charge = self._charge
        charge += self.increment_per_frame * np.maximum(grey, 0.0)
        fired = charge >= thr
        charge -= thr * fired
        np.minimum(charge, thr, out=charge)  # one read-out per frame: cap what a saturated pixel carries
        spikes = fired.astype(np.uint8)
        if self.noise_prob > 0.0:
            spikes |= (self._rng.random(grey.shape) < self.noise_prob).astype(np.uint8)
        self._frames += 1
        return spikes

    def integrate(self, grey_frames: np.ndarray) -> np.ndarray:
        """Run ``step`` over a stack of frames.

        Args:
            grey_frames: (T, h, w) float grey levels 0..1, one per spike frame.

        Returns:
            (T, h, w) uint8 spike frames of 0/1.
        """
        grey_frames = np.asarray(grey_frames)
        if grey_frames.ndim != 3:
            raise ValueError(f"grey_frames must be 3-D (T, h, w), got shape {grey_frames.shape}")
        out = np.empty(grey_frames.shape, dtype=np.uint8)
        for t in range(grey_frames.shape[0]):
            out[t] = self.step(grey_frames[t])
        return out


def bgr_to_grey(image: np.ndarray) -> np.ndarray:
    """Grey level 0..1 (float32) of a BGR uint8 image: 0.11 B + 0.59 G + 0.3 R (the paper's weights)."""
    image = np.asarray(image, dtype=np.float32) / 255.0
    return 0.11 * image[..., 0] + 0.59 * image[..., 1] + 0.3 * image[..., 2]
