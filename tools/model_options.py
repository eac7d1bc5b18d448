"""The model, weights, backend and device options of ``deblur``, ``batch`` and ``eval``, declared once.

The three commands pick a deblurrer the same way (engine/deblur.py ``make_deblurrer``), so they
take the same flags with the same names, choices and help; ``eval`` scores several methods at
once, so its ``--model`` and ``--weights`` repeat (``multiple=True``: parameters ``models`` and
``weights`` as tuples) and it offers the backends it compares.

Examples:
    >>> import click
    >>> @click.command()
    ... @model_options()
    ... def show(model, weights, backend, device):
    ...     click.echo(f"{model} {weights} {backend} {device}")
    >>> from click.testing import CliRunner
    >>> CliRunner().invoke(show, ["--model", "sdm", "--device", "cpu"]).output
    'sdm None auto cpu\\n'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from spikereveal.engine.backends import BACKEND_CHOICES, DEVICES

F = TypeVar("F", bound=Callable[..., Any])

#: The deblurrers a ``--model`` picks (engine/deblur.py MODELS, without importing torch for --help).
DEBLUR_MODELS = ("ldn", "sdm")
WEIGHTS_HELP = "LDN weights: a paper .pth, a project .safetensors, or 'default' (the project's own)."
BACKEND_HELP = (
    "Where the LDN runs: auto (TensorRT on a GPU, else torch on CUDA, else torch on the CPU) or one backend."
)
DEVICE_HELP = (
    "auto (the GPU where the backend can use one), cpu or cuda; an absent GPU is an error unless auto."
)


def model_options(
    *,
    models: Sequence[str] = DEBLUR_MODELS,
    multiple: bool = False,
    model_help: str = "Default: ldn (sdm only where the default weights are not built).",
    backends: Sequence[str] = BACKEND_CHOICES,
    backend_default: str = "auto",
    device: bool = True,
) -> Callable[[F], F]:
    """``--model``, ``--weights``, ``--backend`` (and ``--device``) on a click command.

    One model and one weights file (parameters ``model``, ``weights``), or with ``multiple`` each
    repeatable (``models``, ``weights``: tuples). ``device=False`` leaves ``--device`` out.
    """
    decorators = [
        click.option(
            "--model",
            "models" if multiple else "model",
            type=click.Choice(list(models)),
            default=None,
            multiple=multiple,
            help=model_help,
        ),
        click.option(
            "--weights",
            default=None,
            multiple=multiple,
            help=WEIGHTS_HELP + (" Repeatable: each is scored." if multiple else ""),
        ),
        click.option(
            "--backend",
            type=click.Choice(list(backends)),
            default=backend_default,
            show_default=True,
            help=BACKEND_HELP if "auto" in backends else "Where the LDN runs.",
        ),
    ]
    if device:
        decorators.append(
            click.option(
                "--device", type=click.Choice(DEVICES), default="auto", show_default=True, help=DEVICE_HELP
            )
        )

    def apply(command: F) -> F:
        for decorator in reversed(decorators):  # --help lists them in the order above
            command = decorator(command)
        return command

    return apply
