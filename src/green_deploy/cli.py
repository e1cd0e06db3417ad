"""Project commands (Kedro loads ``<package>.cli`` and lets its commands replace its own).

``kedro run`` is Kedro's, except at its end: when the run stops on one of green-deploy's own errors
(a misspelt setting, a missing artifact, a variant that could not be measured), the last thing
printed is that error's message, which says what to do, and not a screen of traceback. The
traceback goes to ``logs/error.log``; ``kedro run --verbose`` prints it as before. Errors that are
not green-deploy's (a bug) keep Kedro's full traceback.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from green_deploy.errors import GreenDeployError

ERROR_LOG = Path("logs") / "error.log"


@click.group(name="green_deploy")
def cli() -> None:
    """green-deploy's project commands."""


@cli.command(
    name="run",
    params=[
        *kedro_run.params,
        click.Option(["--verbose"], is_flag=True, help="print the traceback of a green-deploy error"),
    ],
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
@click.pass_context
def run(ctx: click.Context, verbose: bool, **kwargs: Any) -> None:
    try:
        ctx.invoke(kedro_run, **kwargs)
    except GreenDeployError as error:
        if verbose:
            raise
        ERROR_LOG.parent.mkdir(parents=True, exist_ok=True)
        with ERROR_LOG.open("a") as log:
            log.write(f"--- {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC\n{traceback.format_exc()}\n")
        click.secho(f"\n{type(error).__name__}: {error}", fg="red", err=True)
        click.echo(f"(the traceback is in {ERROR_LOG}; `kedro run --verbose` prints it)", err=True)
        ctx.exit(1)
