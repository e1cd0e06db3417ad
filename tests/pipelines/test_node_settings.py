"""Every pipeline's section of the parameters is checked before anything runs: a misspelt key is an
error naming the section and the keys it knows, never silently ignored."""

from __future__ import annotations

import pandas as pd
import pytest

from green_deploy.errors import ConfigError
from green_deploy.pipelines.estimate.nodes import estimate_energy
from green_deploy.pipelines.optimize.nodes import optimize_zoo_model
from green_deploy.pipelines.tradeoff.nodes import report_study
from green_deploy.pipelines.zoo.nodes import build_model


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: optimize_zoo_model({}, {"onlyy": "pt_fp16", "variants": {}}, "m"),
            r"optimize: unknown key\(s\) \['onlyy'\]; known: \[.*'only'",
        ),
        (
            lambda: optimize_zoo_model({}, {"run": {"check_exampels": 5}, "variants": {}}, "m"),
            r"optimize.run: unknown setting\(s\) \['check_exampels'\]; known: \['calibration_examples', 'check_examples'",
        ),
        (lambda: build_model({"modles": {}}, "m"), r"zoo: unknown key\(s\) \['modles'\]"),
        (
            lambda: build_model({"models": {}, "parity": {"atool": 1}}, "m"),
            r"zoo.parity: unknown setting\(s\) \['atool'\]",
        ),
        (
            lambda: report_study(
                pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {"titel": "x"}
            ),
            r"tradeoff: unknown key\(s\) \['titel'\]; known: \['title'\]",
        ),
        (
            lambda: estimate_energy({}, pd.DataFrame(), {"device": "h100"}),
            r"estimate: unknown key\(s\) \['device'\]",
        ),
    ],
)
def test_a_misspelt_key_names_its_section_and_the_known_keys(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
