"""``spikereveal batch``'s core: deblur every exposure of a dataset on a pool of workers.

A dataset of thousands of exposures outgrows one process, and on a cluster one machine. The work
here is split so that the scheduler is not ours:

- :func:`plan_batch` opens the dataset (any layout capture/datasets.py reads), lists its samples and
  sorts out those already done (resume: a sample's ``frames.json`` is present, parses, and every
  frame it lists exists);
- :class:`BatchWorker` keeps one deblurrer loaded and turns one sample into the files
  ``spikereveal deblur`` writes (``<out>/<scene>/<name>/frame_000.png ...``, ``frames.json``, by the
  deblur command's own :func:`~spikereveal.tools.deblur_cmd.write_sequence`); a bad sample comes back
  as a failure with its reason, never an exception that ends the run;
- the runners stream the samples to the workers as they free up: Ray actors (one per worker, one
  GPU each where there are GPUs) through ``ray.wait``, or a local process pool
  (``concurrent.futures``, spawn) whose initializer loads the model once per process.

The runners (:func:`run_on_workers`) serve any worker class of that shape (``ready``,
``backend_name``, ``run(item)``), not only this one: ``spikereveal eval --ray`` scores samples on
them with tools/eval.py's ``EvalWorker``.

Both runners call the same worker code on the same inputs, so they write byte-identical files;
frames.json holds no timings nor worker ids for that reason. Timings go to ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from spikereveal.capture.datasets import DatasetEntry, open_dataset
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.tools.deblur_cmd import MANIFEST_NAME

log = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"
RUNNERS = ("ray", "local")
#: How long the local pool's workers wait for each other to be up (model loaded) before the timed part.
READY_TIMEOUT_S = 600.0
#: Makes the result of an item whose worker died: ``failed(item, reason)``.
FailedItem = Callable[[Any, str], Any]


class BatchError(SpikeRevealError):
    """A batch that cannot run at all (bad options, no worker could load the model, no Ray)."""


@dataclass(frozen=True)
class BatchConfig:
    """What a batch deblurs and how; one copy travels to every worker (so: small, picklable).

    ``model`` is resolved (ldn or sdm) and ``weights`` is the file the LDN loads (None for sdm).
    ``ray``: ``auto`` (Ray if installed, else local), ``local``, or a Ray cluster address.
    ``threads``: CPU threads per worker (None: the usable cores shared among the workers).
    """

    data: Path
    out: Path
    model: str = "sdm"
    weights: str | None = None
    backend: str = "auto"
    device: str = "auto"
    times: int = 5
    workers: int = 1
    ray: str = "auto"
    threads: int | None = None
    density_norm: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise BatchError(f"workers must be >= 1, got {self.workers}")
        if self.times < 1:
            raise BatchError(f"times must be >= 1, got {self.times}")

    def worker_threads(self) -> int:
        """CPU threads each worker's LDN may use: the usable cores split among the workers."""
        if self.threads:
            return self.threads
        from spikereveal.engine.threads import usable_cores

        return max(1, usable_cores() // self.workers)


@dataclass(frozen=True)
class SampleResult:
    """What a worker did with one sample: ``status`` done or failed (``reason`` then says why)."""

    sample: str
    status: str
    reason: str | None = None
    frames: int = 0


@dataclass(frozen=True)
class BatchPlan:
    """The dataset's samples split into those to run and those a previous run finished."""

    entries: tuple[DatasetEntry, ...]
    todo: tuple[DatasetEntry, ...]
    skipped: tuple[str, ...]


@dataclass
class BatchSummary:
    """``summary.json``: counts, times and every failure with its reason."""

    samples: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0  # from all workers ready to the last result
    startup_s: float = 0.0  # starting the workers and loading their models
    samples_per_s: float = 0.0  # done / seconds
    runner: str = "local"
    workers: int = 1
    model: str = "sdm"
    backend: str | None = None
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_dir(out: Path, entry: DatasetEntry) -> Path:
    """Where one sample's frames go: ``<out>/<scene>/<name>``."""
    return out / entry.scene / entry.name


def is_done(folder: Path) -> bool:
    """Whether ``folder`` holds a finished sample: frames.json parses and every frame it lists exists.

    A run killed mid-sample leaves frames without a manifest (write_sequence writes it last), or
    a manifest whose frames were removed since: both are redone, never trusted.
    """
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        names = [entry["file"] for entry in manifest["frames"]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(names) and all(isinstance(n, str) and (folder / n).is_file() for n in names)


def plan_batch(config: BatchConfig) -> BatchPlan:
    """Open the dataset and split its samples into done (skipped) and to do."""
    if config.out.exists() and not config.out.is_dir():
        raise BatchError(f"out {config.out}: is a file, not a folder")
    dataset = open_dataset(config.data, with_sharp=False, missing_blur_ok=True)
    todo, skipped = [], []
    for entry in dataset.entries:
        if is_done(sample_dir(config.out, entry)):
            skipped.append(entry.sample_name)
        else:
            todo.append(entry)
    return BatchPlan(tuple(dataset.entries), tuple(todo), tuple(skipped))


class BatchWorker:
    """One worker: the dataset reader and one loaded deblurrer, reused for every sample it is given.

    Used as is by the local pool (one per process) and as a Ray actor class. Building the model
    may fail (bad weights, an absent GPU): then every call says so as a ``start-failed`` result,
    which the runner turns into one error line instead of N identical failures.
    """

    def __init__(self, config: BatchConfig) -> None:
        self.config = config
        self.start_error: str | None = None
        self.deblurrer: Any = None
        try:
            self.dataset = open_dataset(config.data, with_sharp=False, missing_blur_ok=True)
            from spikereveal.engine.deblur import make_deblurrer
            from spikereveal.tools import deblur_cmd  # noqa: F401  (imported once here, not on the first sample)

            self.deblurrer = make_deblurrer(
                config.model,
                weights=config.weights,
                backend=config.backend,
                device=config.device,
                threads=config.worker_threads(),
                density_norm=config.density_norm,
            )
        except Exception as exc:  # reported by the runner as one line
            self.start_error = reason_line(exc)

    def ready(self) -> str | None:
        """None once the model is loaded, else why it could not be."""
        return self.start_error

    def backend_name(self) -> str | None:
        return getattr(getattr(self.deblurrer, "backend", None), "name", None)

    def run(self, entry: DatasetEntry) -> SampleResult:
        """Deblur one sample into its folder; any error becomes a failed result naming it."""
        if self.start_error is not None:
            return SampleResult(entry.sample_name, "start-failed", self.start_error)
        try:
            count = self._deblur(entry)
        except Exception as exc:  # one bad sample must not end the run
            log.info("%s: failed: %s", entry.sample_name, exc)
            return SampleResult(entry.sample_name, "failed", reason_line(exc))
        return SampleResult(entry.sample_name, "done", None, count)

    def _deblur(self, entry: DatasetEntry) -> int:
        from spikereveal.calibration.model import Calibration
        from spikereveal.engine.deblur import WINDOW_FRAMES, to_uint8
        from spikereveal.engine.windows import check_exposure, exposure_times
        from spikereveal.tools.deblur_cmd import _density_info, write_sequence

        config = self.config
        sample = self.dataset.load(entry)
        start, end = sample.exposure
        times = exposure_times(start, end, config.times)
        window = WINDOW_FRAMES[config.model]
        check_exposure(
            (start, end), times, sample.spikes.shape[0], window, reader=f"the {config.model} model"
        )
        frames = self.deblurrer.sequence(sample.blur, sample.spikes, (start, end), times)
        blur_hw = list(sample.blur.shape[:2])
        # The same keys as `spikereveal deblur`'s frames.json (plus the sample), nothing run-specific.
        info = {
            "model": config.model,
            "backend": self.backend_name(),
            "weights": config.weights,
            "blur": str(entry.blur_path),
            "spikes": str(entry.spike_path),
            "spike_size": list(sample.spikes.shape[1:3]),
            "blur_size": blur_hw,
            "exposure_nominal": [start, end],
            "exposure": [start, end],
            "calibration": {"path": None, **Calibration().to_dict()},
            "spike_density": _density_info(self.deblurrer, sample.blur, sample.spikes, (start, end)),
            "sample": entry.sample_name,
        }
        write_sequence(sample_dir(config.out, entry), to_uint8(frames), times, info)
        return len(times)


def _failed_sample(entry: DatasetEntry, reason: str) -> SampleResult:
    return SampleResult(entry.sample_name, "failed", reason)


def reason_line(exc: BaseException) -> str:
    """One line for a failure: our errors say it all; anything else keeps its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (SpikeRevealError, OSError)):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- the runners: one worker class, many workers --------------------------------------------
#
# A worker class is built as ``worker_class(config)`` once per worker (``config``: small, picklable)
# and offers ``ready() -> str | None`` (None once its model is loaded, else why not),
# ``backend_name() -> str | None`` and ``run(item)`` (never raises for one bad item). BatchWorker is
# one; tools/eval.py's EvalWorker is another: both runners below serve any such class.

_WORKER: Any = None
_BARRIER: Any = None


def _init_local(worker_class: Callable[[Any], Any], config: Any, barrier: Any) -> None:
    """Process pool initializer: load the model once for every item this process will run."""
    global _WORKER, _BARRIER
    _WORKER = worker_class(config)
    _BARRIER = barrier


def _local_ready() -> tuple[str | None, str | None]:
    """Wait for all workers to be up (each process takes exactly one of these calls), then report."""
    assert _WORKER is not None
    _BARRIER.wait(READY_TIMEOUT_S)
    return _WORKER.ready(), _WORKER.backend_name()


def _local_run(item: Any) -> Any:
    assert _WORKER is not None
    return _WORKER.run(item)


def _run_local(
    worker_class: Callable[[Any], Any], config: Any, todo: Sequence[Any], workers: int, failed: FailedItem
) -> Iterator[Any]:
    """Generator: yields ("ready", backend) once every process has its model, then each item's result."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    workers = max(1, min(workers, len(todo)))
    barrier = ctx.Barrier(workers)
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_local, initargs=(worker_class, config, barrier)
    ) as pool:
        readies = [f.result() for f in [pool.submit(_local_ready) for _ in range(workers)]]
        _check_started([error for error, _ in readies])
        yield ("ready", readies[0][1])
        futures = {pool.submit(_local_run, item): item for item in todo}
        try:
            for future in as_completed(futures):
                try:
                    yield future.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory): say so per item
                    yield failed(futures[future], f"worker died: {reason_line(exc)}")
        finally:
            for future in futures:
                future.cancel()


# --- Ray ----------------------------------------------------------------------------------------


def ray_available() -> bool:
    """Whether Ray can be imported here (the optional ``cluster`` extra)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _run_ray(
    worker_class: Callable[[Any], Any],
    config: Any,
    todo: Sequence[Any],
    workers: int,
    failed: FailedItem,
    address: str,
) -> Iterator[Any]:
    """Generator like :func:`_run_local`, on Ray actors (one GPU each where torch sees GPUs).

    ``address``: ``auto`` (a local Ray with ``workers`` CPUs, unless one is already initialized)
    or a cluster address to join.
    """
    try:
        import ray
    except ImportError:
        raise BatchError(
            "ray is not installed; install the cluster extra (pip install -e .[cluster]) or use local"
        ) from None
    started_here = False
    if not ray.is_initialized():
        if address == "auto":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BatchError(f"ray address {address}: cannot connect ({reason_line(exc)})") from None
        started_here = True
    try:
        gpus = 1 if _cuda_available() else 0
        actor_class = ray.remote(num_cpus=1, num_gpus=gpus)(worker_class)
        count = max(1, min(workers, len(todo)))
        actors = [actor_class.remote(config) for _ in range(count)]
        readies = ray.get([a.ready.remote() for a in actors])
        _check_started(readies)
        yield ("ready", ray.get(actors[0].backend_name.remote()))
        yield from _stream_to_actors(ray, actors, todo, failed)
        for actor in actors:
            ray.kill(actor)
    finally:
        if started_here:
            ray.shutdown()


def _stream_to_actors(ray: Any, actors: list[Any], todo: Sequence[Any], failed: FailedItem) -> Iterator[Any]:
    """Give each free actor the next item (ray.wait): a slow item never holds up the others.

    An actor that dies takes only its item with it (reported failed); the others carry on.
    """
    queue = deque(todo)
    free = list(actors)
    pending: dict[Any, tuple[Any, Any]] = {}
    while queue or pending:
        while free and queue:
            actor, item = free.pop(), queue.popleft()
            pending[actor.run.remote(item)] = (actor, item)
        if not pending:  # every actor died
            for item in queue:
                yield failed(item, "ray: no worker left")
            return
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        actor, item = pending.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            yield failed(item, f"ray worker died: {reason_line(exc)}")
            continue
        except ray.exceptions.RayError as exc:
            result = failed(item, f"ray: {reason_line(exc)}")
        free.append(actor)
        yield result


def _check_started(errors: Sequence[str | None]) -> None:
    for error in errors:
        if error is not None:
            raise BatchError(f"a worker could not load the model: {error}")


def run_on_workers(
    worker_class: Callable[[Any], Any],
    config: Any,
    todo: Sequence[Any],
    *,
    workers: int,
    ray: str,
    failed: FailedItem,
) -> Iterator[Any]:
    """Run ``worker_class(config).run(item)`` for every item on ``workers`` workers, as they free up.

    ``ray``: ``auto`` (Ray if installed, else local), ``local`` (a spawn process pool) or a Ray
    cluster address. A generator: first ``("ready", backend_name)`` once every worker has loaded
    its model (BatchError if one could not), then each item's result in completion order;
    ``failed(item, reason)`` makes the result of an item whose worker died. Close it to stop.
    """
    if choose_runner(ray) == "ray":
        return _run_ray(worker_class, config, todo, workers, failed, ray)
    return _run_local(worker_class, config, todo, workers, failed)


def choose_runner(ray_option: str) -> str:
    """``ray`` or ``local`` for ``--ray`` auto / local / an address."""
    if ray_option == "local":
        return "local"
    if ray_option == "auto":
        return "ray" if ray_available() else "local"
    if not ray_available():
        raise BatchError(f"ray address {ray_option}: ray is not installed (pip install -e .[cluster])")
    return "ray"


def run_batch(
    config: BatchConfig, *, progress: bool = True, on_result: Callable[[SampleResult], None] | None = None
) -> BatchSummary:
    """Deblur every sample of ``config.data`` not yet done into ``config.out``; write summary.json."""
    t0 = time.perf_counter()
    plan = plan_batch(config)
    runner = choose_runner(config.ray)
    summary = BatchSummary(
        samples=len(plan.entries),
        skipped=len(plan.skipped),
        runner=runner,
        workers=config.workers,
        model=config.model,
    )
    config.out.mkdir(parents=True, exist_ok=True)
    if plan.todo:
        stream = run_on_workers(
            BatchWorker,
            config,
            plan.todo,
            workers=config.workers,
            ray=config.ray,
            failed=_failed_sample,
        )
        _, summary.backend = next(stream)
        summary.startup_s = time.perf_counter() - t0
        t_work = time.perf_counter()
        bar = tqdm(total=len(plan.todo), desc=f"batch ({runner} x{config.workers})", disable=not progress)
        try:
            for result in stream:
                if result.status == "start-failed":  # a worker died and came back without its model
                    raise BatchError(f"a worker could not load the model: {result.reason}")
                if result.status == "done":
                    summary.done += 1
                else:
                    summary.failed += 1
                    summary.failures.append({"sample": result.sample, "reason": result.reason or "unknown"})
                if on_result is not None:
                    on_result(result)
                bar.update(1)
        finally:
            bar.close()
            stream.close()
        summary.seconds = time.perf_counter() - t_work
        summary.samples_per_s = summary.done / summary.seconds if summary.seconds > 0 else 0.0
    summary.failures.sort(key=lambda f: f["sample"])
    (config.out / SUMMARY_NAME).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    log.info("batch done: %s", summary)
    return summary


def default_workers() -> int:
    """One worker per GPU where there are GPUs, else one per usable core (at most 4)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:
        pass
    return max(1, min(4, len(os.sched_getaffinity(0))))
