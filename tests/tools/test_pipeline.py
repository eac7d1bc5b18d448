"""tools/pipeline.py: the node command lines and exit descriptions (the processes: test_run_cmd.py)."""

import signal

from spikereveal.tools.pipeline import NodeEndpoints, describe_exit, node_commands
from spikereveal.tools.run_config import RunConfig

EP = NodeEndpoints("tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002")


def _after(argv, flag):
    return argv[argv.index(flag) + 1]


def test_nodes_are_wired_capture_to_engine_to_display():
    cmds = node_commands(RunConfig(), EP)
    assert list(cmds) == ["display", "engine", "capture"]
    assert _after(cmds["capture"], "--pub") == EP.bundles
    assert _after(cmds["engine"], "--sub") == EP.bundles and _after(cmds["engine"], "--pub") == EP.results
    assert _after(cmds["display"], "--sub") == EP.results
    for argv in cmds.values():
        assert _after(argv, "--policy") == "lossless"
        assert "--allow-remote" not in argv


def test_settings_reach_their_node():
    config = RunConfig().with_overrides(
        {
            "capture.source": "sim:pan?count=2",
            "capture.loop": True,
            "engine.weights": "w.safetensors",
            "engine.times": 3,
            "display.window": False,
            "display.record": "o.mp4",
            "policy": "latest",
            "allow_remote": True,
        }
    )
    cmds = node_commands(config, EP)
    assert _after(cmds["capture"], "--source") == "sim:pan?count=2" and "--loop" in cmds["capture"]
    assert _after(cmds["engine"], "--weights") == "w.safetensors" and _after(cmds["engine"], "--times") == "3"
    assert "--no-window" in cmds["display"] and _after(cmds["display"], "--record") == "o.mp4"
    assert all(_after(a, "--policy") == "latest" and "--allow-remote" in a for a in cmds.values())


def test_exit_descriptions():
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
