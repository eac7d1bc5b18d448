"""``spikereveal eval``'s core: PSNR/SSIM of every method against ground truth, as the paper reports them.

For each sample of a dataset with ground truth (any layout capture/datasets.py reads: GOPRO-spike,
what ``spikereveal simulate`` writes) it runs the methods asked for at the output times that have
ground truth, and scores each frame with scikit-image's PSNR (data range 1) and SSIM (7x7 window,
``channel_axis=2``) on BGR in [0, 1] (tools/metrics.py: uint8 images with data range 255 give the
same numbers). Methods:

- ``blur``: the blurry input itself, at every time (the baseline every method must beat);
- ``sdm``: the closed-form SDM (engine/sdm.py), no weights;
- ``teacher``: S-SDM's cascade (engine/teacher.py: SDM on SR(TFP_long) and SR(BSN(TFP_short)));
- ``ldn``: each set of LDN weights given (``default``: the shipped ones), with the density
  normalization of engine/density.py unless it is turned off.

Outputs (:func:`write_report`): ``eval.json`` (the numbers, per time, averaged and per sample; no
timings, so two runs give identical files) and ``contact_sheet.png`` (per sample GT | blur | SDM |
teacher | each LDN at the centre time). Everything here is deterministic: the same data and
weights give the same numbers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from spikereveal.capture.datasets import SpikeDataset, open_dataset
from spikereveal.capture.images import write_image
from spikereveal.capture.sample import Sample
from spikereveal.engine.deblur import Deblurrer
from spikereveal.engine.density import estimate_density
from spikereveal.engine.windows import LDN_WINDOW, SDM_SHORT_WINDOW, exposure_times
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.tools.contact_sheet import contact_sheet
from spikereveal.tools.metrics import psnr, ssim

log = logging.getLogger(__name__)

METHOD_KINDS = ("blur", "sdm", "teacher", "ldn")
REPORT_NAME = "eval.json"
SHEET_NAME = "contact_sheet.png"
#: The contact sheet shows at most this many samples (one row each), tiles at most this wide.
SHEET_ROWS = 16
SHEET_TILE_WIDTH = 320
#: Spike frames each method reads around an output time (the blur reads none).
_WINDOWS = {"blur": 1, "sdm": SDM_SHORT_WINDOW, "teacher": SDM_SHORT_WINDOW, "ldn": LDN_WINDOW}


class EvalError(SpikeRevealError):
    """An evaluation that cannot run: no ground truth, no samples, methods that need missing inputs."""


@dataclass(frozen=True)
class Method:
    """One row of the table: ``name`` as printed, ``kind`` one of METHOD_KINDS, ``weights`` as given."""

    name: str
    kind: str
    weights: str | None = None


@dataclass(frozen=True)
class EvalConfig:
    """What ``spikereveal eval`` was asked (validated by :func:`plan_methods` and :func:`evaluate`).

    ``models``: method kinds to run (empty: blur, sdm, teacher when ``bsn`` and ``sr`` are given,
    ldn when ``weights`` are); ``weights``: LDN weights, each a path or ``default``; ``times``: K
    output times spread over the exposure (None: every time with ground truth); ``limit``: the
    first N samples only; ``ray``: None to score in this process, else ``auto``, ``local`` or a
    Ray cluster address, on ``workers`` workers (tools/batch.py's runners).
    """

    data: Path
    weights: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    bsn: Path | None = None
    sr: Path | None = None
    times: int | None = None
    limit: int | None = None
    density_norm: bool = True
    backend: str = "torch"
    threads: int | None = None
    progress: bool = True
    ray: str | None = None
    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise EvalError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class Runner:
    """How one method runs: ``run(sample, times)`` -> (K, H, W, 3) float BGR; ``deblurrer`` the
    engine deblurrer behind it, if any (an LDN's reports its density normalization)."""

    run: Callable[[Sample, list[int]], np.ndarray]
    deblurrer: object | None = None

    def close(self) -> None:
        if self.deblurrer is not None:
            self.deblurrer.close()  # type: ignore[attr-defined]


@dataclass
class MethodScores:
    """PSNR/SSIM of one method: ``psnr[s][k]`` for sample s at output time k."""

    method: Method
    psnr: list[list[float]] = field(default_factory=list)
    ssim: list[list[float]] = field(default_factory=list)
    density: list[dict[str, float | bool]] = field(default_factory=list)  # LDN: one per sample


def plan_methods(
    models: Sequence[str], weights: Sequence[str], bsn: Path | None, sr: Path | None
) -> list[Method]:
    """The table's rows, in the paper's order: blur, SDM, teacher, then each LDN.

    ``ldn`` asked for without weights means the shipped default weights. Raises EvalError for a
    teacher without both nets, or LDN weights given while ``models`` leaves the LDN out.
    """
    unknown = [m for m in models if m not in METHOD_KINDS]
    if unknown:
        raise EvalError(f"model {unknown[0]!r} is not one of {', '.join(METHOD_KINDS)}")
    if (bsn is None) != (sr is None):
        raise EvalError("the cascade teacher needs both --bsn W and --sr W (got only one)")
    if models:
        kinds = set(models)
        if "teacher" in kinds and bsn is None:
            raise EvalError("--model teacher needs the cascade's nets: --bsn W --sr W")
        if weights and "ldn" not in kinds:
            raise EvalError("--weights are LDN weights, but --model leaves out ldn; add --model ldn")
    else:
        kinds = (
            {"blur", "sdm"} | ({"teacher"} if bsn is not None else set()) | ({"ldn"} if weights else set())
        )
    specs = list(weights) if weights else (["default"] if "ldn" in kinds else [])
    methods = [Method(kind, kind) for kind in ("blur", "sdm", "teacher") if kind in kinds]
    if "ldn" in kinds:
        names = [f"ldn({'default' if spec == 'default' else Path(spec).stem})" for spec in specs]
        for i, (name, spec) in enumerate(zip(names, specs, strict=True)):
            clash = names.count(name) > 1
            methods.append(Method(f"{name}#{i + 1}" if clash else name, "ldn", spec))
    return methods


def _scaled(image: np.ndarray) -> np.ndarray:
    """``image`` shrunk (INTER_AREA) to at most SHEET_TILE_WIDTH wide, as the sheet will show it."""
    width = image.shape[1]
    if width <= SHEET_TILE_WIDTH:
        return image
    size = (SHEET_TILE_WIDTH, max(1, round(image.shape[0] * SHEET_TILE_WIDTH / width)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float BGR 0..1 (any shape) -> uint8, clipped and rounded: the images every tool writes."""
    return np.clip(np.rint(np.asarray(frames, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def score(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of one (H, W, 3) float BGR estimate against its uint8 ground truth.

    The estimate is clipped to [0, 1] and rounded to 8 bits (the frames deblur writes), then
    scored with tools/metrics.py, which equals skimage on float [0, 1] with data range 1.
    """
    image = to_uint8(estimate)
    return psnr(image, truth), ssim(image, truth)


def output_times(sample: Sample, count: int | None, window: int) -> list[int]:
    """The spike indices to score ``sample`` at: ``count`` spread over the exposure, else every
    ground-truth time inside the exposure that the widest method's ``window`` can read.

    Raises EvalError when a requested time has no ground truth or none is usable.
    """
    half = window // 2
    last = sample.spikes.shape[0] - 1
    start, end = sample.exposure
    have = sorted(int(t) for t in sample.sharp)
    if count is not None:
        times = exposure_times(start, end, count)
        missing = [t for t in times if t not in sample.sharp]
        if missing:
            raise EvalError(
                f"sample {sample.name}: --times {count} asks for spike index {missing[0]}, which has no ground "
                f"truth (it has {', '.join(map(str, have))}); leave --times out to use those"
            )
        return times
    times = [t for t in have if start <= t <= end and half <= t <= last - half]
    if not times:
        raise EvalError(
            f"sample {sample.name}: no ground-truth time inside exposure {start}:{end} that a {window}-frame "
            f"window fits (ground truth at {', '.join(map(str, have))})"
        )
    return times


def _open(config: EvalConfig) -> tuple[SpikeDataset, list[int]]:
    """The dataset and the indices of the samples to score (those with ground truth, up to limit)."""
    dataset = open_dataset(config.data)
    with_truth = [i for i, entry in enumerate(dataset.entries) if entry.sharp_paths]
    if not with_truth:
        raise EvalError(
            f"{config.data}: no ground truth ({dataset.layout} layout, {len(dataset)} samples, no "
            "sharp_data/<scene>/<name>/<index>.png); eval scores against sharp frames, so it needs a set "
            "that has them, e.g. one written by `spikereveal simulate`"
        )
    skipped = len(dataset) - len(with_truth)
    if skipped:
        log.warning("%s: %d of %d samples have no ground truth; skipped", config.data, skipped, len(dataset))
    if config.limit is not None:
        if config.limit < 1:
            raise EvalError(f"--limit {config.limit}: must be >= 1")
        with_truth = with_truth[: config.limit]
    return dataset, with_truth


def _blur_frames(sample: Sample, times: list[int]) -> np.ndarray:
    return np.broadcast_to(
        sample.blur.astype(np.float32) / np.float32(255.0), (len(times), *sample.blur.shape)
    )


def _deblurrer_runner(deblurrer: Deblurrer) -> Runner:
    def run(sample: Sample, times: list[int]) -> np.ndarray:
        return deblurrer.sequence(sample.blur, sample.spikes, sample.exposure, times)

    return Runner(run, deblurrer)


def _make_runner(method: Method, config: EvalConfig) -> Runner:
    """The runner of one method, its weights loaded (a bad weights file fails here, before any work)."""
    from spikereveal.engine.deblur import make_deblurrer

    if method.kind == "blur":
        return Runner(_blur_frames)
    if method.kind == "sdm":
        return _deblurrer_runner(make_deblurrer("sdm"))
    if method.kind == "teacher":
        return _teacher_runner(config)
    from spikereveal.engine.weights import resolve_weights

    assert method.weights is not None
    ldn = make_deblurrer(
        "ldn",
        weights=resolve_weights(method.weights),
        backend=config.backend,
        threads=config.threads,
        density_norm=config.density_norm,
    )
    return _deblurrer_runner(ldn)


def _teacher_runner(config: EvalConfig) -> Runner:
    import torch

    from spikereveal.engine.teacher import CascadeTeacher
    from spikereveal.engine.weights import load_net

    assert config.bsn is not None and config.sr is not None
    bsn, _ = load_net(config.bsn, "bsn")
    sr, _ = load_net(config.sr, "sr")
    teacher = CascadeTeacher(bsn, sr)

    def run(sample: Sample, times: list[int]) -> np.ndarray:
        blur = torch.from_numpy(sample.blur.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
        spikes = torch.from_numpy(sample.spikes.astype(np.float32))[None]
        out = teacher(blur, spikes, sample.exposure, times)  # (1, K, 3, H, W)
        return out[0].permute(0, 2, 3, 1).numpy()

    return Runner(run)


@dataclass(frozen=True)
class SampleScores:
    """Every method's scores on one sample: what a worker sends back (small: the sheet tiles are scaled).

    ``position``: the sample's place among those scored (the report keeps that order);
    ``psnr``/``ssim``: per method name, one value per output time; ``ldn_density``: per LDN
    method, its density normalization; ``sheet``: the centre-time tiles (GT and each method),
    only for the first SHEET_ROWS samples.
    """

    position: int
    name: str
    times: tuple[int, ...]
    density: float
    psnr: dict[str, list[float]]
    ssim: dict[str, list[float]]
    ldn_density: dict[str, dict[str, float | bool]]
    sheet: dict[str, np.ndarray] | None = None
    label: str = ""


@dataclass(frozen=True)
class SampleFailure:
    """A sample a worker could not score: ``reason`` is the one-line error."""

    position: int
    reason: str
    status: str = "failed"


def score_sample(
    sample: Sample,
    position: int,
    methods: Sequence[Method],
    runners: dict[str, Runner],
    config: EvalConfig,
    window: int,
) -> SampleScores:
    """Run every method on ``sample`` at its output times and score each frame (the per-sample work)."""
    times = output_times(sample, config.times, window)
    centre = len(times) // 2
    keep = position < SHEET_ROWS
    sheet = {"GT": _scaled(sample.sharp[times[centre]])} if keep else None
    psnrs: dict[str, list[float]] = {}
    ssims: dict[str, list[float]] = {}
    norms: dict[str, dict[str, float | bool]] = {}
    for method in methods:
        runner = runners[method.name]
        frames = runner.run(sample, times)
        pairs = [score(frames[k], sample.sharp[t]) for k, t in enumerate(times)]
        psnrs[method.name] = [p for p, _ in pairs]
        ssims[method.name] = [s for _, s in pairs]
        if method.kind == "ldn":
            norm = getattr(runner.deblurrer, "last_density", None)
            if norm is not None:
                norms[method.name] = norm.to_dict()
        if sheet is not None:
            sheet[method.name] = _scaled(to_uint8(frames[centre]))
    return SampleScores(
        position=position,
        name=sample.name,
        times=tuple(times),
        density=round(estimate_density(sample.blur, sample.spikes, sample.exposure), 6),
        psnr=psnrs,
        ssim=ssims,
        ldn_density=norms,
        sheet=sheet,
        label=f"{sample.name} t={times[centre]}" if keep else "",
    )


def _runners(methods: Sequence[Method], config: EvalConfig) -> dict[str, Runner]:
    runners: dict[str, Runner] = {}
    try:
        for method in methods:
            runners[method.name] = _make_runner(method, config)
    except BaseException:
        for runner in runners.values():
            runner.close()
        raise
    return runners


def evaluate(config: EvalConfig) -> dict[str, object]:
    """Score every method on every sample with ground truth; returns the report :func:`write_report` writes.

    With ``config.ray`` set, the samples are scored on workers (tools/batch.py's runners: Ray
    actors or a local process pool, ``config.workers`` of them, each with the methods loaded once)
    and put back in dataset order: the report is the same as in this process, number for number.

    Report keys: ``data``, ``samples`` (names), ``times`` (spike indices scored), ``density_norm``,
    ``spike_density`` (each sample's estimate, engine/density.py), ``methods`` (per method: name,
    kind, weights, ``psnr``/``ssim`` as ``{"<t>": mean over samples, ..., "mean": overall}``,
    ``per_sample`` values, and for an LDN its density normalization per sample), and the
    contact-sheet images under the private key ``_sheet`` (not written to JSON).
    """
    methods = plan_methods(config.models, config.weights, config.bsn, config.sr)
    dataset, indices = _open(config)
    if config.ray is not None:
        results = _score_on_workers(config, list(enumerate(indices)))
    else:
        window = max(_WINDOWS[m.kind] for m in methods)
        runners = _runners(methods, config)
        results = []
        try:
            for position, index in enumerate(
                tqdm(indices, desc="eval", unit="sample", disable=not config.progress)
            ):
                results.append(score_sample(dataset[index], position, methods, runners, config, window))
                _check_times(results)  # a mismatch stops at once, before scoring the rest
        finally:
            for runner in runners.values():
                runner.close()
    return _assemble(config, methods, results)


def _check_times(results: Sequence[SampleScores]) -> None:
    """Every sample must be scored at the first sample's times (the table has one column per time)."""
    first = results[0].times
    for result in results[1:]:
        if result.times != first:
            raise EvalError(
                f"sample {result.name}: ground truth at spike indices {list(result.times)}, the samples before "
                f"it at {list(first)}; every sample must have the same times (or pass --times K)"
            )


def _assemble(
    config: EvalConfig, methods: Sequence[Method], results: Sequence[SampleScores]
) -> dict[str, object]:
    """The report of per-sample scores, in dataset order (as they came in, whatever the worker)."""
    results = sorted(results, key=lambda r: r.position)
    _check_times(results)
    times = list(results[0].times)
    names = [r.name for r in results]
    scores = {m.name: MethodScores(m) for m in methods}
    sheet: dict[str, list[np.ndarray]] = {"GT": [], **{m.name: [] for m in methods}}
    labels: list[str] = []
    for result in results:
        for method in methods:
            entry = scores[method.name]
            entry.psnr.append(result.psnr[method.name])
            entry.ssim.append(result.ssim[method.name])
            if method.name in result.ldn_density:
                entry.density.append(result.ldn_density[method.name])
        if result.sheet is not None:
            labels.append(result.label)
            for title, image in result.sheet.items():
                sheet[title].append(image)
    return {
        "data": str(config.data),
        "samples": names,
        "times": times,
        "density_norm": config.density_norm,
        "spike_density": [r.density for r in results],
        "methods": [_method_report(scores[m.name], names, times) for m in methods],
        "_sheet": (sheet, labels),
    }


class EvalWorker:
    """One eval worker (a Ray actor or a local pool process): the dataset and every method loaded once.

    ``run((position, index))`` scores sample ``index`` of the dataset; any error comes back as a
    :class:`SampleFailure` (the driver raises it as one line), never an exception that kills the worker.
    """

    def __init__(self, config: EvalConfig) -> None:
        self.start_error: str | None = None
        self.runners: dict[str, Runner] = {}
        try:
            if config.threads is None:  # the usable cores shared among the workers, not each one all
                from spikereveal.engine.threads import usable_cores

                config = replace(config, threads=max(1, usable_cores() // max(1, config.workers)))
            self.config = config
            self.methods = plan_methods(config.models, config.weights, config.bsn, config.sr)
            self.window = max(_WINDOWS[m.kind] for m in self.methods)
            self.dataset = open_dataset(config.data)
            self.runners = _runners(self.methods, config)
        except Exception as exc:  # reported by the runner as one line
            from spikereveal.tools.batch import reason_line

            self.start_error = reason_line(exc)

    def ready(self) -> str | None:
        """None once every method is loaded, else why not."""
        return self.start_error

    def backend_name(self) -> str | None:
        for runner in self.runners.values():
            name = getattr(getattr(runner.deblurrer, "backend", None), "name", None)
            if name:
                return name
        return None

    def run(self, item: tuple[int, int]) -> SampleScores | SampleFailure:
        position, index = item
        if self.start_error is not None:
            return SampleFailure(position, self.start_error, "start-failed")
        try:
            return score_sample(
                self.dataset[index], position, self.methods, self.runners, self.config, self.window
            )
        except Exception as exc:  # one line back to the driver
            from spikereveal.tools.batch import reason_line

            return SampleFailure(position, reason_line(exc))


def _score_on_workers(config: EvalConfig, items: list[tuple[int, int]]) -> list[SampleScores]:
    """Score ``items`` ((position, dataset index) pairs) with tools/batch.py's runners."""
    from spikereveal.tools.batch import run_on_workers

    assert config.ray is not None
    stream = run_on_workers(
        EvalWorker,
        replace(config, progress=False),
        items,
        workers=config.workers,
        ray=config.ray,
        failed=lambda item, reason: SampleFailure(item[0], reason),
    )
    results: list[SampleScores] = []
    failure: SampleFailure | None = None
    done: set[int] = set()
    try:
        next(stream)  # ("ready", backend): every worker has its methods loaded
        for result in tqdm(stream, total=len(items), desc="eval", unit="sample", disable=not config.progress):
            done.add(result.position)
            if isinstance(result, SampleFailure):
                if failure is None or result.position < failure.position:
                    failure = result
            else:
                results.append(result)
            # The plain eval stops at the first bad sample in dataset order. Samples go out in
            # that order, so every one before a failure is already out: wait for those, then stop.
            if failure is not None and all(p in done for p in range(failure.position)):
                break
    finally:
        stream.close()
    if failure is not None:
        raise EvalError(failure.reason)
    return results


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 6)


def _method_report(entry: MethodScores, names: list[str], times: list[int]) -> dict[str, object]:
    def summary(values: list[list[float]]) -> dict[str, float]:
        per_time = {str(t): _mean([row[k] for row in values]) for k, t in enumerate(times)}
        return {**per_time, "mean": _mean([v for row in values for v in row])}

    report: dict[str, object] = {
        "name": entry.method.name,
        "kind": entry.method.kind,
        "weights": entry.method.weights,
        "psnr": summary(entry.psnr),
        "ssim": summary(entry.ssim),
        "per_sample": [
            {
                "sample": name,
                "psnr": [round(v, 6) for v in p],
                "ssim": [round(v, 6) for v in s],
                **({"density": entry.density[i]} if entry.density else {}),
            }
            for i, (name, p, s) in enumerate(zip(names, entry.psnr, entry.ssim, strict=True))
        ],
    }
    return report


def format_table(report: dict[str, object]) -> str:
    """The paper's table: a row per method, PSNR/SSIM per output time and their mean."""
    times = [str(t) for t in report["times"]] + ["mean"]  # type: ignore[union-attr]
    methods = report["methods"]
    assert isinstance(methods, list)
    width = max(len("method"), *(len(m["name"]) for m in methods))
    head = f"{'method':<{width}}" + "".join(f"{('t=' + t) if t != 'mean' else 'mean':>16}" for t in times)
    lines = [head, f"{'':<{width}}" + f"{'PSNR/SSIM':>16}" * len(times)]
    for m in methods:
        cells = "".join(f"{m['psnr'][t]:>9.2f}/{m['ssim'][t]:.3f}".rjust(16) for t in times)
        lines.append(f"{m['name']:<{width}}{cells}")
    samples = report["samples"]
    assert isinstance(samples, list)
    densities = report["spike_density"]
    assert isinstance(densities, list)
    lines.append(
        f"{len(samples)} samples; estimated spike density {np.mean(densities):.3f} spikes/frame per unit grey "
        f"(density normalization {'on' if report['density_norm'] else 'off'})"
    )
    return "\n".join(lines)


def write_report(report: dict[str, object], out_dir: Path) -> tuple[Path, Path]:
    """Write ``eval.json`` and ``contact_sheet.png`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in report.items() if not k.startswith("_")}
    json_path = out_dir / REPORT_NAME
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    sheet, labels = report["_sheet"]  # type: ignore[misc]
    columns = [(title, images) for title, images in sheet.items()]
    sheet_path = out_dir / SHEET_NAME
    write_image(sheet_path, contact_sheet(columns, labels, max_tile_width=SHEET_TILE_WIDTH))
    return json_path, sheet_path
