"""How the spike sensor maps onto the RGB sensor: a small, file-backed calibration record.

The nominal rig (GOPRO-spike, RSB) has spikes at exactly 1/4 of the RGB resolution per side,
aligned at the top-left corner and synchronised to the frame. A ``Calibration`` states that
relation explicitly so that readers can check sizes against it and so that a later, estimated
calibration (offsets, a non-integer scale) drops in without touching the readers.

Coordinate convention: spike pixel (y, x) covers the RGB block whose top-left corner is at
``(offset_dy + y * scale, offset_dx + x * scale)`` in RGB pixels. ``spike_offset_frames``
shifts the exposure window in the spike stream: the RGB exposure that nominally spans spike
frames ``[s, e]`` spans ``[s + spike_offset_frames, e + spike_offset_frames]``.

A measured calibration (``spikereveal calibrate spatial`` / ``temporal``) adds ``homography``, the
3x3 matrix mapping spike pixel ``(x, y, 1)`` to RGB pixel ``(x, y, 1)`` with pixel centres at
integers (it supersedes ``scale`` and ``offset`` where present), its reprojection error ``rms_px``
in RGB pixels, and ``time_offset_ns``: spike clock = RGB clock + offset, with its standard
deviation ``time_offset_std_ns``.

Files are YAML (``.yaml``/``.yml``) or JSON (``.json``) with the keys ``version``, ``id``,
``scale``, ``offset`` (``[dy, dx]``), ``spike_offset_frames``, ``homography``, ``rms_px``,
``time_offset_ns`` and ``time_offset_std_ns``; all optional, unknown keys are errors (they are
usually typos). Files written before the homography existed carry no ``version`` and read as
version 1; files are written as version 2.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spikereveal.stream.errors import SpikeRevealError

# The size ratio of every public spike dataset: 180x320 vs 720x1280, 250x400 vs 1000x1600.
NOMINAL_SCALE = 4.0

_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_KEYS = (
    "version",
    "id",
    "scale",
    "offset",
    "spike_offset_frames",
    "homography",
    "rms_px",
    "time_offset_ns",
    "time_offset_std_ns",
)
#: The version written now; 1 is a file without a ``version`` key (no homography, no time offset).
CALIBRATION_VERSION = 2
_VERSIONS = (1, 2)
# A homography whose linear part is this close to singular folds the spike image onto a line.
_SINGULAR_RTOL = 1e-9

Homography = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


class CalibrationError(SpikeRevealError):
    """A calibration file or value is wrong, or two sensors' sizes do not fit a calibration."""


@dataclass(frozen=True)
class Calibration:
    """Spatial and temporal relation between the spike sensor and the RGB sensor.

    Attributes:
        scale: RGB pixels per spike pixel along each side (4.0 on every public dataset).
        offset: (dy, dx) in RGB pixels of the spike grid's top-left corner on the RGB image.
        spike_offset_frames: shift, in spike frames, of the RGB exposure inside the spike stream.
        id: a name for the record (shown in error messages and metadata).
        version: file format version (2; 1 for files written before ``homography`` existed).
        homography: 3x3 matrix, spike pixel (x, y, 1) -> RGB pixel (x, y, 1), pixel centres at
            integers; None means the nominal ``scale``/``offset`` relation.
        rms_px: reprojection error of ``homography`` in RGB pixels (None when not measured).
        time_offset_ns: spike clock = RGB clock + ``time_offset_ns``.
        time_offset_std_ns: standard deviation of ``time_offset_ns`` (None when not measured).
    """

    scale: float = NOMINAL_SCALE
    offset: tuple[float, float] = (0.0, 0.0)
    spike_offset_frames: int = 0
    id: str = "nominal"
    # The file format, not the sensor relation: a v1 file equals the same record read as v2.
    version: int = field(default=CALIBRATION_VERSION, compare=False)
    homography: Homography | None = None
    rms_px: float | None = None
    time_offset_ns: int = 0
    time_offset_std_ns: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)):
            raise CalibrationError(f"calibration scale: {self.scale!r} is not a number")
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise CalibrationError(f"calibration scale: {self.scale!r} must be a finite number > 0")
        offset = tuple(self.offset) if isinstance(self.offset, (list, tuple)) else None
        if (
            offset is None
            or len(offset) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in offset)
            or not all(math.isfinite(v) for v in offset)
        ):
            raise CalibrationError(f"calibration offset: {self.offset!r} is not a pair of numbers [dy, dx]")
        object.__setattr__(self, "offset", (float(offset[0]), float(offset[1])))
        object.__setattr__(self, "scale", float(self.scale))
        if isinstance(self.spike_offset_frames, bool) or not isinstance(self.spike_offset_frames, int):
            raise CalibrationError(
                f"calibration spike_offset_frames: {self.spike_offset_frames!r} is not a whole number of frames"
            )
        if not isinstance(self.id, str) or not self.id:
            raise CalibrationError(
                f'calibration id: {self.id!r} is not a non-empty string (write it in quotes, e.g. id: "rig-1")'
            )
        if isinstance(self.version, bool) or self.version not in _VERSIONS:
            raise CalibrationError(
                f"calibration version: {self.version!r} is not a known version ({', '.join(map(str, _VERSIONS))})"
            )
        if self.homography is not None:
            object.__setattr__(self, "homography", _check_homography(self.homography))
        for name in ("rms_px", "time_offset_std_ns"):
            value = getattr(self, name)
            if value is None:
                continue
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise CalibrationError(f"calibration {name}: {value!r} must be a finite number >= 0")
            object.__setattr__(self, name, float(value))
        offset_ns = self.time_offset_ns
        if _is_number(offset_ns) and isinstance(offset_ns, float) and offset_ns.is_integer():
            offset_ns = int(offset_ns)
        if isinstance(offset_ns, bool) or not isinstance(offset_ns, int):
            raise CalibrationError(
                f"calibration time_offset_ns: {self.time_offset_ns!r} is not a whole number of nanoseconds"
            )
        object.__setattr__(self, "time_offset_ns", offset_ns)

    def spike_to_rgb_matrix(self) -> Homography:
        """The 3x3 matrix taking spike pixel (x, y, 1) to RGB pixel (x, y, 1), pixel centres at integers.

        The measured ``homography`` where there is one; else the nominal relation: spike pixel x
        covers RGB pixels ``offset_dx + x*scale .. + scale``, whose centre is
        ``offset_dx + x*scale + (scale - 1)/2``.

        Examples:
            >>> Calibration().spike_to_rgb_matrix()[0]
            (4.0, 0.0, 1.5)
        """
        if self.homography is not None:
            return self.homography
        s, (dy, dx) = self.scale, self.offset
        c = (s - 1.0) / 2.0
        return ((s, 0.0, dx + c), (0.0, s, dy + c), (0.0, 0.0, 1.0))

    def expected_spike_size(self, blur_size: tuple[int, int]) -> tuple[int, int]:
        """Spike frame size (h, w) that goes with an RGB image of ``blur_size`` (H, W)."""
        height, width = blur_size
        return round(height / self.scale), round(width / self.scale)

    def rgb_size_for(self, spike_hw: tuple[int, int]) -> tuple[int, int]:
        """RGB image size (H, W) that spike frames of ``spike_hw`` (h, w) cover: ``scale`` times per side."""
        return round(spike_hw[0] * self.scale), round(spike_hw[1] * self.scale)

    def fits(self, blur_hw: tuple[int, int], spike_hw: tuple[int, int]) -> bool:
        """True when each spike side times ``scale`` lands within half an RGB pixel of the RGB side."""
        return all(abs(s * self.scale - b) <= 0.5 for s, b in zip(spike_hw, blur_hw, strict=True))

    def check_sizes(self, blur_hw: tuple[int, int], spike_hw: tuple[int, int]) -> None:
        """Raise ``CalibrationError`` unless spike frames of ``spike_hw`` fit an RGB image of ``blur_hw``.

        Sizes fit when each spike side times ``scale`` lands within half an RGB pixel of the RGB
        side: for the nominal scale 4 that means exactly 1/4 per side. The message names both
        ways out in whole pixels (the RGB size these spikes need, the spike size this RGB needs),
        never a fractional size no file can have.
        """
        if self.fits(blur_hw, spike_hw):
            return
        raise CalibrationError(
            f"spike frames {_hw(spike_hw)} do not fit RGB {_hw(blur_hw)} "
            f"(1/{_fmt(self.scale)} per side, calibration '{self.id}'): {self.size_advice(blur_hw, spike_hw)}"
        )

    def size_advice(self, blur_hw: tuple[int, int], spike_hw: tuple[int, int]) -> str:
        """The sizes that would fit, in whole pixels: the spike size for this RGB, the RGB size for these spikes.

        When no whole spike size fits the RGB image (250x400 at scale 4: 62.5 rows), it says so and
        why, rather than quoting a fractional size no file can have.
        """
        rgb, scale = _hw(blur_hw), _fmt(self.scale)
        expected = self.expected_spike_size(blur_hw)
        unfit = [b for b, e in zip(blur_hw, expected, strict=True) if e < 1 or not self.fits((b,), (e,))]
        if not unfit:
            other = f"expected {_hw(expected)} spike frames for RGB {rgb}"
        else:
            other = (
                f"no whole spike size fits RGB {rgb} (RGB is {scale}x the spike size per side, "
                f"and {unfit[0]}/{scale} = {_fmt(unfit[0] / self.scale)})"
            )
        return f"{other}; spike frames of {_hw(spike_hw)} need RGB {_hw(self.rgb_size_for(spike_hw))}"

    @property
    def is_nominal_alignment(self) -> bool:
        """True when the spike grid starts at the RGB image's top-left corner (offset 0, 0)."""
        return self.offset == (0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as written to files and metadata."""
        data = asdict(self)
        data["offset"] = list(self.offset)
        if self.homography is not None:
            data["homography"] = [list(row) for row in self.homography]
        return {"version": data.pop("version"), **data}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_homography(value: object) -> Homography:
    """``value`` as a 3x3 tuple of floats; a ``CalibrationError`` naming the field otherwise."""
    rows = value if isinstance(value, (list, tuple)) else None
    if (
        rows is None
        or len(rows) != 3
        or not all(isinstance(r, (list, tuple)) and len(r) == 3 for r in rows)
        or not all(_is_number(v) for r in rows for v in r)
    ):
        raise CalibrationError(f"calibration homography: {value!r} is not a 3x3 list of numbers")
    matrix = tuple(tuple(float(v) for v in r) for r in rows)
    if not all(math.isfinite(v) for r in matrix for v in r):
        raise CalibrationError(f"calibration homography: {value!r} holds NaN or infinite values")
    det = _det3(matrix)
    scale = max(abs(v) for r in matrix for v in r)
    if scale == 0 or abs(det) <= _SINGULAR_RTOL * scale**3:
        raise CalibrationError(
            f"calibration homography: {value!r} is singular (determinant {det:.3g}); it must map the "
            "spike image onto a plane, not a line or a point"
        )
    return matrix  # type: ignore[return-value]


def _det3(m: tuple[tuple[float, ...], ...]) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _format_of(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise CalibrationError(
            f"{path}: unknown calibration file type '{path.suffix}' (use .yaml, .yml or .json)"
        )
    return fmt


def calibration_from_dict(data: Any, source: str = "calibration") -> Calibration:
    """Build a ``Calibration`` from parsed file content; errors name ``source`` and the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CalibrationError(
            f"{source}: expected a mapping of {', '.join(_KEYS)}, got {type(data).__name__}"
        )
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise CalibrationError(
            f"{source}: unknown field(s) {', '.join(map(str, unknown))} (known: {', '.join(_KEYS)})"
        )
    if "version" not in data:
        data = {**data, "version": 1}  # written before the homography and time offset existed
    try:
        return Calibration(**data)
    except CalibrationError as exc:
        raise CalibrationError(f"{source}: {exc}") from None


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration from a YAML or JSON file."""
    path = Path(path)
    fmt = _format_of(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: calibration file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = _load_yaml(text) if fmt == "yaml" else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{path}: not valid {fmt.upper()}: {exc}") from None
    return calibration_from_dict(data, source=str(path))


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load``, except that a plain ``id`` value stays the text written in the file.

    YAML 1.1 reads ``id: off`` as False, ``id: no`` as False and ``id: 2024`` as an int; a name is
    always text, so the top-level ``id`` keeps the scalar's source text (``null``/``~`` stays None,
    which the record then rejects by name).
    """
    data = yaml.safe_load(text)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if isinstance(data, dict) and isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if (
                isinstance(key, yaml.ScalarNode)
                and key.value == "id"
                and isinstance(value, yaml.ScalarNode)
                and value.tag != "tag:yaml.org,2002:null"
                and not isinstance(data.get("id"), str)
            ):
                data["id"] = value.value
    return data


def save_calibration(path: str | Path, calibration: Calibration) -> Path:
    """Write ``calibration`` as YAML or JSON (chosen by the file suffix); returns the path."""
    path = Path(path)
    fmt = _format_of(path)
    data = {**calibration.to_dict(), "version": CALIBRATION_VERSION}  # always written as the current format
    text = yaml.safe_dump(data, sort_keys=False) if fmt == "yaml" else json.dumps(data, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)  # `calibrate --out new/calib.yaml` makes its folder
    path.write_text(text, encoding="utf-8")
    return path
