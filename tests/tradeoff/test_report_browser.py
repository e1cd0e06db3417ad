"""The tradeoff report opened in a real browser: headless Chromium (installed by `make setup`)
renders every section and draws the inlined plots."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from green_deploy.tradeoff.questions import answer_all
from green_deploy.tradeoff.report import figures, render_html
from tests.tradeoff.test_questions import _table

# Without these, Chromium keeps trying to reach Google's hosts on this closed network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MATPLOTLIB_BLUE = np.array([31, 119, 180]) / 255  # the first colour of every plot


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is missing: `make setup` installs it (scripts/install_system_data.sh)")
    return path


def test_the_report_renders_with_its_plots_in_headless_chromium(tmp_path):
    from matplotlib.image import imread

    table = _table().assign(metric="accuracy", study="s", energy_measured=False)
    page = tmp_path / "report.html"
    page.write_text(render_html(answer_all(table), figures(table), "study"))
    browser = [_chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]

    dom = subprocess.run(
        [*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert all(f'<section id="RQ1.{i}">' in dom for i in range(1, 8))

    shot = tmp_path / "shot.png"
    subprocess.run(
        [*browser, "--window-size=1200,6000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = imread(shot)[..., :3]
    plotted = np.all(np.abs(pixels - MATPLOTLIB_BLUE) < 0.06, axis=-1).sum()
    assert plotted > 500  # the PNGs decoded and were drawn, not just their captions
