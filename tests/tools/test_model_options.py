"""tools/model_options.py: deblur, batch and eval take --model/--weights/--backend from one declaration."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from spikereveal.tools.batch_cmd import batch_command
from spikereveal.tools.deblur_cmd import deblur_command
from spikereveal.tools.eval_cmd import eval_command
from spikereveal.tools.model_options import BACKEND_HELP, DEVICE_HELP, WEIGHTS_HELP, model_options


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params if p.name}


@pytest.mark.parametrize("command", [deblur_command, batch_command])
def test_deblur_and_batch_declare_the_same_options(command: click.Command) -> None:
    params = _params(command)
    assert list(params["model"].type.choices) == ["ldn", "sdm"] and params["model"].default is None
    assert params["weights"].help == WEIGHTS_HELP and not params["weights"].multiple
    assert params["backend"].help == BACKEND_HELP and params["backend"].default == "auto"
    assert params["device"].help == DEVICE_HELP and params["device"].default == "auto"
    assert params["backend"].type.choices == _params(deblur_command)["backend"].type.choices


def test_eval_repeats_model_and_weights_and_has_no_device() -> None:
    params = _params(eval_command)
    assert params["models"].multiple and params["weights"].multiple
    assert list(params["models"].type.choices) == ["blur", "sdm", "teacher", "ldn"]
    assert params["weights"].help.startswith(WEIGHTS_HELP)
    assert (
        list(params["backend"].type.choices) == ["torch", "onnxruntime"]
        and params["backend"].default == "torch"
    )
    assert "device" not in params


def test_parsed_values_and_a_bad_choice() -> None:
    @click.command()
    @model_options(multiple=True)
    def show(models, weights, backend, device):
        click.echo(f"{models} {weights} {backend} {device}")

    runner = CliRunner()
    result = runner.invoke(show, ["--model", "ldn", "--model", "sdm", "--weights", "a", "--weights", "b"])
    assert result.output == "('ldn', 'sdm') ('a', 'b') auto auto\n"
    bad = runner.invoke(show, ["--backend", "nope"])
    assert bad.exit_code == 2 and "--backend" in bad.output
