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


@cli.command(name="compare")
@click.argument("baseline")
@click.argument("candidate")
@click.option(
    "--margin", default=0.05, show_default=True, help="equivalence margin on J/inference (0.05: ±5%)"
)
@click.option(
    "--alpha", default=0.05, show_default=True, help="level of each test, Holm-adjusted over the cells"
)
@click.option(
    "--fail-on",
    type=click.Choice(["energy", "accuracy", "both", "none"]),
    default="both",
    show_default=True,
    help="exit 1 when a cell regressed in energy, lost accuracy, either, or never",
)
@click.option(
    "--allow-differences",
    is_flag=True,
    help="compare studies measured on other machines, meters or protocols",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("data/08_reporting/compare"), show_default=True
)
@click.option(
    "--tracking-uri",
    default="sqlite:///mlflow.db",
    show_default=True,
    help="where mlflow:<run> studies are read from",
)
def compare(
    baseline: str,
    candidate: str,
    margin: float,
    alpha: float,
    fail_on: str,
    allow_differences: bool,
    out: Path,
    tracking_uri: str,
) -> None:
    """Compare two studies cell by cell: improved, equivalent, regressed or inconclusive, the
    machine's drift between the runs divided out; writes compare.md and compare.json. A study is
    a folder (data/07_model_output/evaluate/<study>) or mlflow:<parent run id or study name>."""
    from green_deploy.compare.studies import Study, compare_studies, write_outputs

    try:
        comparison = compare_studies(
            Study.load(baseline, tracking_uri),
            Study.load(candidate, tracking_uri),
            margin,
            alpha,
            allow_differences,
        )
    except GreenDeployError as error:
        click.secho(f"{type(error).__name__}: {error}", fg="red", err=True)
        raise SystemExit(2) from None
    markdown, data = write_outputs(comparison, out)
    click.echo(markdown.read_text())
    click.echo(f"(written: {markdown}, {data})")
    if comparison.failed(fail_on):
        raise SystemExit(1)
