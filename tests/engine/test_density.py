"""engine/density.py: the spike density estimated from the data, and its use in the LDN path."""

from __future__ import annotations

import numpy as np
import pytest

from spikereveal.capture.node import bundle_from_capture
from spikereveal.capture.scenes import pan_scene
from spikereveal.capture.simulation import SimulationConfig, simulate_sample
from spikereveal.capture.sources import open_source
from spikereveal.engine.deblur import LDNDeblurrer, SDMDeblurrer, make_deblurrer
from spikereveal.engine.density import (
    PAPER_DENSITY,
    SCALE_RANGE,
    DensityError,
    density_scale,
    estimate_density,
    trained_density,
)
from spikereveal.engine.node import EngineNodeConfig, process_bundle
from spikereveal.engine.windows import exposure_times, ldn_inputs


def simulated(vth: float, texture: str = "astronaut", noise: float = 0.0, size=(32, 48)):
    """One real sample of the simulator: a pan over ``texture`` at threshold ``vth``."""
    config = SimulationConfig(spike_size=size, vth=vth, noise_prob=noise)
    frames = pan_scene(config.frames_per_sample, config.blur_size, texture=texture)
    return simulate_sample(frames, config.new_camera(), config)


def test_golden_uniform_grey_and_a_known_rate():
    # GIVEN a uniform grey 0.6 blur (153/255) and pixels that fire on every 5th frame (rate 0.2)
    blur = np.full((32, 32, 3), 153, np.uint8)
    spikes = np.zeros((50, 8, 8), np.uint8)
    spikes[::5] = 1
    # THEN the density is rate / grey = 0.2 / 0.6
    assert estimate_density(blur, spikes, (0, 49)) == pytest.approx(0.2 / 0.6, rel=1e-6)
    # AND only the exposure counts: spikes outside it change nothing
    spikes[:10] = 1
    assert estimate_density(blur, spikes, (10, 49)) == pytest.approx(0.2 / 0.6, rel=1e-6)


def test_grey_weights_are_the_papers_on_bgr():
    # GIVEN a pure red, a pure green and a pure blue blur (BGR order) at the same firing rate
    spikes = np.zeros((20, 8, 8), np.uint8)
    spikes[::2] = 1  # rate 0.5
    for channel, weight in ((2, 0.3), (1, 0.59), (0, 0.11)):
        blur = np.zeros((32, 32, 3), np.uint8)
        blur[..., channel] = 255
        if weight < 0.2:  # grey 0.11: still inside the range used
            assert estimate_density(blur, spikes, (0, 19)) == pytest.approx(0.5 / 0.11, rel=1e-5)
        else:
            assert estimate_density(blur, spikes, (0, 19)) == pytest.approx(0.5 / weight, rel=1e-5)


@pytest.mark.parametrize("texture", ["astronaut", "procedural"])
@pytest.mark.parametrize("noise", [0.0, 0.007])
def test_simulated_thresholds_are_recovered_within_ten_percent(texture, noise):
    # GIVEN the same scene simulated at paper Vth 1, 2 and 4
    est = {vth: estimate_density(*_parts(simulated(vth, texture, noise))) for vth in (1, 2, 4)}
    # THEN the estimates' ratios give back the thresholds within 10 %
    for k in (2, 4):
        assert est[1] / est[k] == pytest.approx(k, rel=0.10), est
    # AND each is the simulator's 1.985 / (2 Vth) within 10 %
    for vth, value in est.items():
        assert value == pytest.approx(1.985 / (2 * vth), rel=0.10), est


def _parts(sample):
    return sample.blur, sample.spikes, sample.exposure


def test_pixels_at_the_one_spike_per_frame_cap_are_left_out():
    # GIVEN a sensor of density 2: a grey-0.3 half fires at 0.6, a grey-0.9 half is capped at 1.0
    blur = np.zeros((16, 32, 3), np.uint8)
    blur[:, :16] = round(0.3 * 255)
    blur[:, 16:] = round(0.9 * 255)
    spikes = np.zeros((100, 4, 8), np.uint8)
    spikes[:60, :, :4] = 1
    spikes[:, :, 4:] = 1
    # THEN the estimate is the unsaturated half's 2.0, not the 1.33 of all pixels
    assert estimate_density(blur, spikes, (0, 99)) == pytest.approx(0.6 / (round(0.3 * 255) / 255), rel=1e-3)


def test_black_or_spikeless_exposures_are_undetermined_and_leave_the_input_alone():
    spikes = np.ones((30, 8, 8), np.uint8)
    assert estimate_density(np.zeros((32, 32, 3), np.uint8), spikes, (0, 29)) == 0.0
    grey = np.full((32, 32, 3), 128, np.uint8)
    assert estimate_density(grey, np.zeros((30, 8, 8), np.uint8), (0, 29)) == 0.0
    assert density_scale(0.0, PAPER_DENSITY) == 1.0
    assert density_scale(float("nan"), PAPER_DENSITY) == 1.0


def test_scale_is_trained_over_estimated_and_bounded():
    assert density_scale(0.25, 1.0) == pytest.approx(4.0)
    assert density_scale(1.0, 0.5) == pytest.approx(0.5)
    assert density_scale(1e-6, 1.0) == SCALE_RANGE[1]
    assert density_scale(1e6, 1.0) == SCALE_RANGE[0]
    # property: a sensor at the trained density is left alone
    for d in (0.1, 0.5, 0.99, 3.0):
        assert density_scale(d, d) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("blur", "spikes", "exposure", "needle"),
    [
        (np.zeros((8, 8), np.uint8), np.zeros((4, 2, 2), np.uint8), (0, 3), "blur: shape (8, 8)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((2, 2), np.uint8), (0, 1), "spikes: shape (2, 2)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((4, 2, 2), np.uint8), (2, 9), "exposure 2:9 is outside"),
    ],
)
def test_bad_inputs_name_what_is_wrong(blur, spikes, exposure, needle):
    with pytest.raises(DensityError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        estimate_density(blur, spikes, exposure)


def test_trained_density_comes_from_the_metadata():
    # The paper's .pth has no metadata: trained at Vth 1, ~0.99 spikes per frame at grey 1.
    assert trained_density({"format": "pytorch"}) == pytest.approx(0.9925)
    assert trained_density({"spike_density": "0.5"}) == 0.5
    assert trained_density({"vth": "4"}) == pytest.approx(0.9925 / 4)
    assert trained_density({"spike_density": "0.3", "vth": "1"}) == 0.3  # the measured value wins
    with pytest.raises(DensityError, match=r"w.safetensors: metadata spike_density = 'dense'"):
        trained_density({"spike_density": "dense"}, source="w.safetensors")
    with pytest.raises(DensityError, match="vth = '-2'"):
        trained_density({"vth": "-2"})


# --- the LDN path --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_ldn_state():
    torch = pytest.importorskip("torch")
    from spikereveal.engine.ldn import LDN

    torch.manual_seed(0)
    return LDN().state_dict()


def test_ldn_inputs_are_scaled_to_the_trained_density(random_ldn_state):
    from spikereveal.engine.backends import create_backend

    # GIVEN a real Vth-2 sample (density ~0.5) and an LDN trained at the paper's 0.99
    sample = simulated(2.0, size=(16, 24))
    times = exposure_times(*sample.exposure, 3)
    backend = create_backend("torch", random_ldn_state, threads=1)
    ldn = LDNDeblurrer(backend, trained_density=PAPER_DENSITY)
    # WHEN it deblurs with the normalization on (the default)
    out = ldn.sequence(sample.blur, sample.spikes, sample.exposure, times)
    norm = ldn.last_density
    # THEN the estimate is ~0.5 and the windows were doubled (0/2 instead of 0/1)
    assert norm is not None and norm.enabled
    assert norm.estimated == pytest.approx(0.4963, rel=0.05)
    assert norm.scale == pytest.approx(PAPER_DENSITY / norm.estimated)
    blur, windows = ldn_inputs(sample.blur, sample.spikes, times)
    assert set(np.unique(ldn_inputs(sample.blur, sample.spikes, times, spike_scale=norm.scale)[1])) == {
        0.0,
        np.float32(norm.scale),
    }
    expected = backend.run(blur, windows * np.float32(norm.scale)).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # AND with the normalization off the raw 0/1 windows go in, and the output differs
    ldn.density_norm = False
    raw = ldn.sequence(sample.blur, sample.spikes, sample.exposure, times)
    assert ldn.last_density.scale == 1.0 and not ldn.last_density.enabled
    assert ldn.last_density.estimated == norm.estimated
    np.testing.assert_allclose(raw, backend.run(blur, windows).transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(raw, out)
    ldn.close()


def test_make_deblurrer_reads_the_trained_density_from_the_weights(tmp_path, random_ldn_state):
    from spikereveal.engine.weights import save_ldn_state

    path = save_ldn_state(tmp_path / "w.safetensors", random_ldn_state, {"spike_density": "0.25"})
    ldn = make_deblurrer("ldn", weights=path, threads=1)
    assert ldn.trained_density == 0.25 and ldn.density_norm
    ldn.close()
    off = make_deblurrer("ldn", weights=path, threads=1, density_norm=False)
    assert not off.density_norm
    off.close()


def test_paper_checkpoint_is_assumed_trained_at_vth_1(paper_weights):
    ldn = make_deblurrer("ldn", weights=paper_weights, threads=1)
    assert ldn.trained_density == pytest.approx(0.9925)
    ldn.close()


def test_each_live_result_reports_the_estimate():
    # GIVEN a real bundle of the simulated camera at Vth 4
    source = open_source("sim:pan?size=16x24&count=1&vth=4")
    (capture,) = list(source)
    bundle = bundle_from_capture(capture, source.source_id)
    # WHEN the engine processes it with SDM (which needs no density, but reports it all the same)
    result = process_bundle(bundle, SDMDeblurrer(), 3)
    # THEN the Result carries the estimate, ~0.25
    assert result.spike_density == pytest.approx(
        estimate_density(capture.sample.blur, capture.sample.spikes, capture.sample.exposure)
    )
    assert result.spike_density == pytest.approx(0.25, rel=0.10)


def test_engine_node_setting_defaults_on_and_turns_off():
    assert EngineNodeConfig().density_norm is True
    assert EngineNodeConfig(density_norm=False).density_norm is False
