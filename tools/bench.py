"""``spikereveal bench``: one subcommand per thing we measure (each prints a table and writes JSON)."""

from __future__ import annotations

import click

from spikereveal.tools.bench_batch import batch_bench_command
from spikereveal.tools.bench_decode import decode_command
from spikereveal.tools.bench_live import live_command
from spikereveal.tools.bench_model import model_command
from spikereveal.tools.bench_pool import pool_command
from spikereveal.tools.bench_transport import transport_command


@click.group("bench")
def bench_group() -> None:
    """Measure speed; prints a table and writes JSON"""


bench_group.add_command(batch_bench_command)
bench_group.add_command(decode_command)
bench_group.add_command(live_command)
bench_group.add_command(model_command)
bench_group.add_command(pool_command)
bench_group.add_command(transport_command)
