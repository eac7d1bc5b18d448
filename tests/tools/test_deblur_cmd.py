"""``spikereveal deblur`` end to end on real files: the contract other checks rely on."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.tools.metrics import psnr


def _sample_files(sim_dataset: Path) -> tuple[Path, Path]:
    return sim_dataset / "blur_data/pan/0000.png", sim_dataset / "spike_data/pan/0000.dat"


def _truth(sim_dataset: Path, t: int) -> np.ndarray:
    return cv2.imread(str(sim_dataset / f"sharp_data/pan/0000/{t:03d}.png"), cv2.IMREAD_COLOR)


def _sample_args(sim_dataset: Path, *, blur: Path | None = None, spikes: Path | None = None) -> list:
    """``--blur --spikes --spike-size`` of the simulated sample (32x48 spikes); ``blur``/``spikes``
    replace its files."""
    sample_blur, sample_spikes = _sample_files(sim_dataset)
    return ["--blur", blur or sample_blur, "--spikes", spikes or sample_spikes, "--spike-size", "32x48"]


def test_sdm_writes_k_frames_at_the_paper_times(cli, sim_dataset, tmp_path):
    # GIVEN a simulated blur and its 137-frame spike file (32x48 spikes, 128x192 blur)
    blur, _ = _sample_files(sim_dataset)
    out = tmp_path / "out"
    # WHEN deblurring with the default exposure into 5 frames
    res = cli("deblur", *_sample_args(sim_dataset), "--times", 5, "--model", "sdm", "--out", out)
    # THEN five frames of the blur's size come out at 20, 44, 68, 92, 116, sharper than the blur
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "frames.json").read_text())
    assert manifest["spike_indices"] == [20, 44, 68, 92, 116]
    assert [f["file"] for f in manifest["frames"]] == [f"frame_{i:03d}.png" for i in range(5)]
    blur_img = cv2.imread(str(blur), cv2.IMREAD_COLOR)
    for i, t in enumerate(manifest["spike_indices"]):
        frame = cv2.imread(str(out / f"frame_{i:03d}.png"), cv2.IMREAD_UNCHANGED)
        assert frame.shape == blur_img.shape and frame.dtype == np.uint8
        assert psnr(frame, _truth(sim_dataset, t)) > psnr(blur_img, _truth(sim_dataset, t)) + 1.0


def test_one_time_is_the_middle_of_the_given_exposure(cli, sim_dataset, tmp_path):
    res = cli("deblur", *_sample_args(sim_dataset), "--exposure", "30:90", "--times", 1, "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "frames.json").read_text())["spike_indices"] == [60]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_paper_ldn_beats_the_blur_on_each_backend(cli, sim_dataset, tmp_path, paper_weights, backend):
    blur, _ = _sample_files(sim_dataset)
    options = ("--times", 1, "--model", "ldn", "--weights", paper_weights, "--backend", backend)
    res = cli("deblur", *_sample_args(sim_dataset), *options, "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    frame = cv2.imread(str(tmp_path / "frame_000.png"), cv2.IMREAD_COLOR)
    blur_img = cv2.imread(str(blur), cv2.IMREAD_COLOR)
    assert psnr(frame, _truth(sim_dataset, 68)) > psnr(blur_img, _truth(sim_dataset, 68)) + 1.0


def test_wrong_resolution_names_both_sizes(cli, sim_dataset, tmp_path):
    blur, _ = _sample_files(sim_dataset)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.imread(str(blur))[:100])
    res = cli("deblur", *_sample_args(sim_dataset, blur=small), "--out", tmp_path / "o")
    assert res.returncode == 2
    assert "32x48" in res.stderr and "100x192" in res.stderr and "Traceback" not in res.stderr


def test_truncated_spike_file_is_a_clear_error(cli, sim_dataset, tmp_path):
    _, spikes = _sample_files(sim_dataset)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(spikes.read_bytes()[:-7])
    res = cli("deblur", *_sample_args(sim_dataset, spikes=cut), "--out", tmp_path / "o")
    assert res.returncode == 2
    assert "cut.dat" in res.stderr and "whole number" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "ldn"], "make default-weights"),  # no --weights and no default weights built
        (["--exposure", "2:130"], "frames -2..6"),  # the 9-frame window around 2 leaves the stream
        (["--exposure", "20:200"], "outside the 137 frames"),
        (["--exposure", "9-3"], "A:B"),
        (["--spike-size", "32by48"], "HxW"),
    ],
)
def test_bad_options_are_named(cli, sim_dataset, tmp_path, extra, needle):
    res = cli("deblur", *_sample_args(sim_dataset), "--out", tmp_path / "o", *extra)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_missing_blur_file_is_named(cli, sim_dataset, tmp_path):
    res = cli("deblur", *_sample_args(sim_dataset, blur=tmp_path / "nope.png"), "--out", tmp_path / "o")
    assert res.returncode == 2 and "nope.png" in res.stderr


# --- issue 6: bad inputs end in one line, calibration is applied, --out holds one run ---------------


def _clip(tmp_path: Path, frames: int, spike_hw: tuple[int, int], blur_hw: tuple[int, int] | None = None):
    """A random spike clip of ``frames`` frames (with sidecar) and a blur, 4x the spikes unless given."""
    from spikereveal.capture.dat import write_dat
    from spikereveal.stream.spikes import SpikeGeometry

    rng = np.random.default_rng(frames)
    spikes = (rng.random((frames, *spike_hw)) < 0.3).astype(np.uint8)
    dat = write_dat(tmp_path / f"clip{frames}.dat", spikes, SpikeGeometry(*spike_hw))
    bh, bw = blur_hw or (spike_hw[0] * 4, spike_hw[1] * 4)
    blur = tmp_path / f"blur{bh}x{bw}.png"
    cv2.imwrite(str(blur), rng.integers(0, 256, (bh, bw, 3), dtype=np.uint8))
    return blur, dat


def _deblur(capsys, *args) -> tuple[int, str]:
    """``spikereveal deblur ARGS`` in-process (same entry point as the console script): (code, stderr)."""
    from spikereveal.tools.cli import main

    code = main(["deblur", *map(str, args)])
    return code, capsys.readouterr().err


def test_ten_frames_of_a_250x400_clip_is_one_line_naming_the_frames_needed(cli, tmp_path):
    # GIVEN 10 spike frames of 250x400 and their 1000x1600 blur (too few for the default exposure)
    blur, dat = _clip(tmp_path, 10, (250, 400))
    # WHEN deblurring without --exposure, in a real process
    res = cli("deblur", "--blur", blur, "--spikes", dat, "--out", tmp_path / "o")
    # THEN one line names the file, its frame count, the frames needed and --exposure
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
    assert "clip10.dat" in res.stderr and "10 spike frames" in res.stderr
    assert "at least 41 frames" in res.stderr and "--exposure A:B inside 0..9" in res.stderr


@pytest.mark.parametrize(
    ("frames", "extra", "needles"),
    [
        # the user set an exposure, not a window: say which exposure fits
        (
            310,
            ["--exposure", "0:300"],
            ["exposure 0:300", "output time 0 needs spike frames -4..4", "4..305"],
        ),
        (310, ["--exposure", "20:30", "--times", "30"], ["--times 30", "at most 11 output times"]),
        (10, ["--exposure", "2:6", "--model", "ldn", "--weights", "w.pth"], ["shorter than the 21 frames"]),
        (10, ["--exposure", "6:8", "--times", "1"], ["output time 7 needs spike frames 3..11", "middle"]),
        (0, ["--exposure", "0:0"], ["holds no spike frames"]),
    ],
)
def test_exposure_errors_speak_in_the_users_options(capsys, tmp_path, frames, extra, needles):
    blur, dat = _clip(tmp_path, frames, (8, 16))
    code, err = _deblur(capsys, "--blur", blur, "--spikes", dat, "--out", tmp_path / "o", *extra)
    assert code == 2 and "Traceback" not in err
    assert all(n in err for n in needles), err
    assert "window 9)" not in err  # not tfp's "(centre 0, window 9)": the user never set a window
    assert not (tmp_path / "o").exists()


def test_times_up_to_the_exposure_frames_work(capsys, tmp_path):
    blur, dat = _clip(tmp_path, 40, (8, 16))
    code, err = _deblur(
        capsys, "--blur", blur, "--spikes", dat, "--exposure", "10:20", "--times", 11, "--out", tmp_path / "o"
    )
    assert code == 0, err
    assert json.loads((tmp_path / "o/frames.json").read_text())["spike_indices"] == list(range(10, 21))


def test_size_mismatch_names_the_rgb_size_needed_and_calibration(capsys, tmp_path):
    # GIVEN 62x100 spikes with a 250x400 blur (62.5 rows at 1/4: no spike size fits that blur)
    blur, dat = _clip(tmp_path, 60, (62, 100), blur_hw=(250, 400))
    code, err = _deblur(capsys, "--blur", blur, "--spikes", dat, "--out", tmp_path / "o")
    # THEN it names the RGB size those spikes need, the 4x ratio and --calibration, and no fractional size
    assert code == 2 and "Traceback" not in err
    assert "need RGB 248x400" in err and "RGB is 4x the spike size" in err and "--calibration" in err
    assert "62.5x100" not in err


def test_ldn_size_error_names_the_rgb_size_and_the_way_out(capsys, tmp_path):
    # GIVEN a calibration of scale 4.03 under which 62x100 spikes fit a 250x403 blur (SDM can use it)
    blur, dat = _clip(tmp_path, 60, (62, 100), blur_hw=(250, 403))
    calib = tmp_path / "rig.yaml"
    calib.write_text("id: rig\nscale: 4.03\n")
    base = ["--blur", blur, "--spikes", dat, "--calibration", calib, "--exposure", "20:40", "--times", 1]
    code, err = _deblur(capsys, *base, "--out", tmp_path / "sdm")
    assert code == 0, err
    # WHEN the LDN is asked for (its scale is fixed at 4; the weights are never read)
    code, err = _deblur(
        capsys, *base, "--model", "ldn", "--weights", tmp_path / "w.pth", "--out", tmp_path / "o"
    )
    # THEN the message says the RGB size needed is 4x the spikes, names it, and names the ways out
    assert code == 2 and "Traceback" not in err
    assert "exactly 4x the spike size" in err and "need RGB 248x400" in err
    assert "--model sdm" in err and "--calibration" in err and "multiples of 4" not in err


def test_spike_offset_frames_shifts_the_exposure_and_is_recorded(capsys, sim_dataset, tmp_path):
    # GIVEN a calibration that puts the RGB exposure 3 spike frames later, with an unquoted id "off"
    calib = tmp_path / "rig.yaml"
    calib.write_text("id: off\nspike_offset_frames: 3\n")
    args = [*_sample_args(sim_dataset), "--times", 3]
    # WHEN deblurring with it, and without it at the exposure shifted by hand
    code, err = _deblur(capsys, *args, "--calibration", calib, "--out", tmp_path / "cal")
    assert code == 0, err
    code, err = _deblur(capsys, *args, "--exposure", "23:119", "--out", tmp_path / "hand")
    assert code == 0, err
    # THEN frames.json says which calibration and values were applied, and the frames are the same
    manifest = json.loads((tmp_path / "cal/frames.json").read_text())
    assert manifest["exposure_nominal"] == [20, 116] and manifest["exposure"] == [23, 119]
    assert manifest["spike_indices"] == [23, 71, 119]
    assert manifest["calibration"] == {
        "path": str(calib),
        "id": "off",
        "scale": 4.0,
        "offset": [0.0, 0.0],
        "spike_offset_frames": 3,
        "version": 1,  # the file has no version key: written before homographies existed
        "homography": None,
        "rms_px": None,
        "time_offset_ns": 0,
        "time_offset_std_ns": None,
    }
    for i in range(3):
        a = cv2.imread(str(tmp_path / f"cal/frame_{i:03d}.png"))
        assert np.array_equal(a, cv2.imread(str(tmp_path / f"hand/frame_{i:03d}.png")))
    nominal = json.loads((tmp_path / "hand/frames.json").read_text())["calibration"]
    assert nominal["path"] is None and nominal["id"] == "nominal"


def test_spike_offset_past_the_stream_names_the_calibration(capsys, sim_dataset, tmp_path):
    calib = tmp_path / "late.yaml"
    calib.write_text("spike_offset_frames: 30\n")
    code, err = _deblur(capsys, *_sample_args(sim_dataset), "--calibration", calib, "--out", tmp_path / "o")
    assert code == 2 and "Traceback" not in err
    assert "spike_offset_frames 30" in err and "late.yaml" in err and "50:146" in err and "137 frames" in err


def test_spatial_offset_is_refused_not_ignored(capsys, sim_dataset, tmp_path):
    calib = tmp_path / "shifted.json"
    calib.write_text('{"id": "rig", "offset": [1.5, -2]}')
    code, err = _deblur(capsys, *_sample_args(sim_dataset), "--calibration", calib, "--out", tmp_path / "o")
    assert code == 2 and "Traceback" not in err
    assert "shifted.json" in err and "offset [1.5, -2.0]" in err and "'rig'" in err
    assert not (tmp_path / "o").exists()


def test_out_with_an_earlier_run_needs_overwrite_and_then_holds_only_the_new_run(
    capsys, sim_dataset, tmp_path
):
    out = tmp_path / "o"
    args = [*_sample_args(sim_dataset), "--out", out]
    # GIVEN a folder with a 5-frame run and a file of the user's
    assert _deblur(capsys, *args, "--times", 5)[0] == 0
    (out / "notes.txt").write_text("mine")
    # WHEN a 3-frame run goes into it without --overwrite THEN it is refused and nothing changes
    code, err = _deblur(capsys, *args, "--times", 3)
    assert code == 2 and "--overwrite" in err and str(out) in err and "Traceback" not in err
    assert len(json.loads((out / "frames.json").read_text())["frames"]) == 5
    # WHEN with --overwrite THEN exactly the new frames are there, and the user's file is kept
    assert _deblur(capsys, *args, "--times", 3, "--overwrite")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "frame_000.png",
        "frame_001.png",
        "frame_002.png",
        "frames.json",
        "notes.txt",
    ]
    assert json.loads((out / "frames.json").read_text())["spike_indices"] == [20, 68, 116]


def test_overwrite_never_deletes_frames_it_did_not_write(capsys, sim_dataset, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "frame_007.png").write_bytes(b"someone else's")
    args = [*_sample_args(sim_dataset), "--out", out]
    code, err = _deblur(capsys, *args)
    assert code == 2 and "--overwrite" in err
    code, err = _deblur(capsys, *args, "--overwrite")
    assert code == 2 and "frame_007.png" in err and "not listed in frames.json" in err
    assert (out / "frame_007.png").read_bytes() == b"someone else's"
    assert not (out / "frames.json").exists()


def test_out_that_is_a_file_is_named(capsys, sim_dataset, tmp_path):
    (tmp_path / "o").write_text("x")
    code, err = _deblur(capsys, *_sample_args(sim_dataset), "--out", tmp_path / "o")
    assert code == 2 and "is a file" in err and "Traceback" not in err


def test_write_sequence_replaces_the_previous_run(tmp_path):
    # The demo writes each sample's frames with write_sequence, run after run into the same folder.
    from spikereveal.tools.deblur_cmd import write_sequence

    frames = np.zeros((5, 4, 4, 3), np.uint8)
    write_sequence(tmp_path, frames, [1, 2, 3, 4, 5], {})
    (tmp_path / "other.png").write_bytes(b"kept")
    write_sequence(tmp_path, frames[:2], [1, 5], {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "frame_000.png",
        "frame_001.png",
        "frames.json",
        "other.png",
    ]


@pytest.mark.parametrize("norm_off", [False, True])
def test_frames_json_reports_the_spike_density(capsys, sim_dataset, tmp_path, norm_off):
    torch = pytest.importorskip("torch")
    from spikereveal.engine.ldn import LDN
    from spikereveal.engine.weights import save_ldn_state

    # GIVEN LDN weights recorded as trained at density 0.5, and a Vth-1 sample (density ~0.99)
    torch.manual_seed(0)
    weights = save_ldn_state(tmp_path / "w.safetensors", LDN().state_dict(), {"spike_density": "0.5"})
    blur, spikes = _sample_files(sim_dataset)
    out = tmp_path / "out"
    extra = ["--no-density-norm"] if norm_off else []
    # WHEN deblurring with the LDN
    code, err = _deblur(
        capsys,
        "--blur",
        blur,
        "--spikes",
        spikes,
        "--model",
        "ldn",
        "--weights",
        weights,
        "--out",
        out,
        *extra,
    )
    assert code == 0, err
    # THEN frames.json says what was estimated, what the weights want, and the scale applied
    density = json.loads((out / "frames.json").read_text())["spike_density"]
    assert density["estimated"] == pytest.approx(0.9925, rel=0.05)
    assert density["trained"] == 0.5
    assert density["enabled"] is not norm_off
    assert density["scale"] == (1.0 if norm_off else pytest.approx(0.5 / density["estimated"], rel=1e-4))


def test_frames_json_of_sdm_reports_the_estimate_only(capsys, sim_dataset, tmp_path):
    blur, spikes = _sample_files(sim_dataset)
    code, err = _deblur(
        capsys, "--blur", blur, "--spikes", spikes, "--model", "sdm", "--out", tmp_path / "out"
    )
    assert code == 0, err
    density = json.loads((tmp_path / "out/frames.json").read_text())["spike_density"]
    assert density["estimated"] == pytest.approx(0.9925, rel=0.05)
    assert density["trained"] is None and density["scale"] == 1.0 and density["enabled"] is False


def test_backend_auto_is_the_default_and_frames_json_names_what_ran(
    cli, sim_dataset, tmp_path, default_weights
):
    # GIVEN the default weights and no --backend; WHEN deblurring with the ldn (-v: INFO lines)
    res = cli("-v", "deblur", *_sample_args(sim_dataset), "--times", 1, "--model", "ldn", "--out", tmp_path)
    # THEN auto chose a backend, said why, and frames.json names the one that ran, not "auto"
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "frames.json").read_text())
    from spikereveal.engine.backends import resolve_backend

    expected = resolve_backend("auto")[0]  # torch here (no GPU); tensorrt or torch on a GPU machine
    assert manifest["backend"] == expected
    auto_lines = [line for line in res.stderr.splitlines() if "backend auto:" in line]
    assert len(auto_lines) == 1 and f"backend auto: {expected} on " in auto_lines[0]


def test_device_cuda_without_a_gpu_is_one_line(cli, sim_dataset, tmp_path, default_weights):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    options = ("--times", 1, "--model", "ldn", "--device", "cuda")
    res = cli("deblur", *_sample_args(sim_dataset), *options, "--out", tmp_path / "o")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "device 'cuda' asked for, but torch sees no CUDA device here" in res.stderr
    assert not (tmp_path / "o" / "frames.json").exists()
