"""engine/node.py under a calibration: sizes checked against it, bundles of another calibration
refused (counted, the node goes on), the sync report forwarded into every Result."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from spikereveal.calibration.model import Calibration, CalibrationError, save_calibration
from spikereveal.engine.deblur import SDMDeblurrer
from spikereveal.engine.node import (
    EngineNode,
    EngineNodeConfig,
    WrongCalibration,
    check_bundle_calibration,
    check_bundle_sizes,
    process_bundle,
)
from spikereveal.stream.transport import LosslessSender, StopFlag, free_tcp_endpoint
from tests.engine.test_node import WAIT_S, Consumer, engine, exit_code, make_bundle, send_all

pytestmark = pytest.mark.timeout(60)

#: A measured calibration: spike pixel x -> RGB 4x + 1.5 (the 4x grid), but a scale field of 2
#: that alone would ask for RGB at twice the spike size: the homography must win.
WARPED = Calibration(
    scale=2.0, id="rig-h", homography=((4.0, 0.0, 1.5), (0.0, 4.0, 1.5), (0.0, 0.0, 1.0)), time_offset_ns=5
)
SYNC = {"exposures": 3, "offset_residual_ns": 812.5, "skipped.lost_block": 1, "lost_blocks": 1}


def test_sizes_follow_the_homography_or_the_scale() -> None:
    # GIVEN a calibration with a homography: the rig warped the blur onto exactly 4x the spikes
    check_bundle_sizes(make_bundle(0, scale=4), WARPED)
    with pytest.raises(CalibrationError, match=r"RGB 32x48 is not 4x the spike frames 16x24 .*'rig-h'"):
        check_bundle_sizes(make_bundle(0, scale=2), WARPED)  # what scale 2 alone would accept
    # AND without one, the calibration's own scale decides (3 here; the nominal 4 refuses it)
    check_bundle_sizes(make_bundle(0, scale=3), Calibration(scale=3.0, id="x3"))
    with pytest.raises(CalibrationError, match="1/4 per side"):
        check_bundle_sizes(make_bundle(0, scale=3))


def test_a_bundle_of_another_calibration_is_refused_by_name() -> None:
    bundle = dataclasses.replace(make_bundle(4), calibration_id="rig-old")
    check_bundle_calibration(bundle, None)  # no file: anything goes, nominal sizes
    check_bundle_calibration(dataclasses.replace(bundle, calibration_id="rig-h"), WARPED)
    with pytest.raises(WrongCalibration, match=r"bundle 4: made under calibration 'rig-old'.*'rig-h'"):
        process_bundle(bundle, SDMDeblurrer(), 2, calibration=WARPED)
    with pytest.raises(WrongCalibration, match="made under calibration none"):
        check_bundle_calibration(dataclasses.replace(bundle, calibration_id=""), WARPED)


def test_process_bundle_forwards_the_sync_report() -> None:
    bundle = dataclasses.replace(make_bundle(2), sync=SYNC, calibration_id="rig-h")
    result = process_bundle(bundle, SDMDeblurrer(), 2, calibration=WARPED)
    assert dict(result.sync) == SYNC
    assert process_bundle(make_bundle(3), SDMDeblurrer(), 2).sync == {}  # a recording: none


def test_a_missing_or_malformed_file_is_one_error_naming_it(tmp_path: Path) -> None:
    config = EngineNodeConfig(model="sdm", calibration=tmp_path / "nope.yaml")
    with pytest.raises(CalibrationError, match=r"calibration: .*nope\.yaml: calibration file not found"):
        EngineNode(config, StopFlag(), deblurrer=SDMDeblurrer())
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: rig-1\nscael: 4\n")
    with pytest.raises(CalibrationError, match=r"bad\.yaml: unknown field\(s\) scael"):
        EngineNode(dataclasses.replace(config, calibration=bad), StopFlag(), deblurrer=SDMDeblurrer())


def test_command_with_a_missing_calibration_is_one_line(cli, tmp_path: Path) -> None:
    result = cli("engine", "--model", "sdm", "--calibration", str(tmp_path / "c.json"), timeout=WAIT_S)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "error:" in result.stderr and "c.json" in result.stderr


def test_engine_refuses_bundles_of_another_calibration_counts_them_and_goes_on(spawn, tmp_path) -> None:
    # GIVEN an engine process holding the calibration 'rig-h' (a file with a homography)
    calib = save_calibration(tmp_path / "calib.json", WARPED)
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    consumer = Consumer(pub)
    consumer.start()
    bundles = [
        dataclasses.replace(make_bundle(0), calibration_id="rig-h", sync=SYNC),
        dataclasses.replace(make_bundle(1), calibration_id="rig-old"),
        make_bundle(2),  # made without any calibration
        dataclasses.replace(make_bundle(3, scale=2), calibration_id="rig-h"),  # not warped to 4x
        dataclasses.replace(make_bundle(4), calibration_id="rig-h"),
    ]
    # WHEN a capture sends them all
    with LosslessSender(sub, node="capture", heartbeat_s=0.1) as sender:
        proc = engine(spawn, sub, pub, "--times", 2, "--calibration", calib)
        send_all(sender, bundles)
        assert sender.flush(WAIT_S)
        sender.close(final_state="finished")
    consumer.finish()
    # THEN only the bundles of its calibration that fit are served, the sync report in the result
    assert [r.seq for r in consumer.results] == [0, 4]
    assert dict(consumer.results[0].sync) == SYNC and consumer.results[1].sync == {}
    counters = consumer.counters
    assert counters["bundles_in"] == 5 and counters["errors"] == 3 and counters["wrong_calibration"] == 2
    assert exit_code(proc) == 0
    log = proc.log_path.read_text()
    assert "calibration 'rig-h'" in log and "made under calibration 'rig-old'" in log
    assert "(2 under another calibration)" in log
    json.dumps(dict(counters))  # the status counters stay plain numbers
