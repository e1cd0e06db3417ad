from __future__ import annotations

import math

import pytest

from green_deploy.errors import ConfigError
from green_deploy.estimate.horowitz import HOROWITZ_45NM, MissingCostError, costs_from_config


@pytest.mark.parametrize(("bits", "add", "mul"), [(8, 0.2, 0.6), (16, 0.4, 1.1), (32, 0.9, 3.7)])
def test_arithmetic_costs_are_the_issue_table(bits, add, mul):
    assert HOROWITZ_45NM.add_pj(bits) == add
    assert HOROWITZ_45NM.mul_pj(bits) == mul


@pytest.mark.parametrize(
    ("footprint_bytes", "expected"),
    [
        (0, (1.25, 2.5, 5.0)),
        (8 * 1024 - 1, (1.25, 2.5, 5.0)),
        (8 * 1024, (2.5, 5.0, 10.0)),
        (32 * 1024 - 1, (2.5, 5.0, 10.0)),
        (32 * 1024, (12.5, 25.0, 50.0)),
        (1024 * 1024 - 1, (12.5, 25.0, 50.0)),
        (1024 * 1024, (250.0, 500.0, 1000.0)),
        (10**12, (250.0, 500.0, 1000.0)),
    ],
)
def test_memory_costs_by_footprint_and_width(footprint_bytes, expected):
    assert tuple(HOROWITZ_45NM.memory_pj(bits, footprint_bytes) for bits in (8, 16, 32)) == expected


def test_a_width_the_table_lacks_is_an_error_not_zero():
    with pytest.raises(MissingCostError, match="64-bit"):
        HOROWITZ_45NM.mul_pj(64)
    with pytest.raises(MissingCostError):
        HOROWITZ_45NM.memory_pj(4, 100)


def test_configuration_overrides_entries_and_levels():
    costs = costs_from_config(
        {
            "add_pj": {8: 0.03},
            "mul_pj": {"8": 0.2},
            "memory_pj": [{"below_bytes": 100, "pj": {32: 1.0}}, {"below_bytes": None, "pj": {32: 2.0}}],
        }
    )
    assert costs.add_pj(8) == 0.03 and costs.add_pj(32) == 0.9
    assert costs.mul_pj(8) == 0.2 and costs.mul_pj(16) == 1.1
    assert costs.memory_pj(32, 99) == 1.0 and costs.memory_pj(32, 100) == 2.0
    assert costs.memory_levels[-1].below_bytes == math.inf
    assert costs_from_config(None) == HOROWITZ_45NM


@pytest.mark.parametrize(
    "raw",
    [{"add": {8: 1.0}}, {"add_pj": {8: -1.0}}, {"mul_pj": {"eight": 1.0}}, {"memory_pj": [{"pj": {8: 1.0}}]}],
)
def test_bad_configuration_is_a_config_error(raw):
    with pytest.raises(ConfigError):
        costs_from_config(raw)
