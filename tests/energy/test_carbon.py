"""Carbon intensity lookups against CodeCarbon's shipped tables, PUE and footprint arithmetic."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

from green_deploy.energy import carbon
from green_deploy.energy.carbon import (
    DEFAULT_PUE,
    CarbonIntensity,
    carbon_g,
    footprint_per_1000,
    intensity_for_cloud,
    intensity_for_country,
    intensity_from_mix,
    joules_to_kwh,
    pue_for,
    source_intensities_g_per_kwh,
)
from green_deploy.errors import ConfigError


def _data_dir() -> Path:
    spec = importlib.util.find_spec("codecarbon")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _impact_rows() -> list[dict[str, str]]:
    with (_data_dir() / "cloud" / "impact.csv").open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _world_average() -> float:
    table = json.loads((_data_dir() / "private_infra" / "carbon_intensity_per_source.json").read_text())
    return float(table["world_average"])


# --- energy mix -----------------------------------------------------------------------------


def test_seed_mix_matches_hand_computed_value():
    result = intensity_from_mix({"coal": 0.25, "petroleum": 0.35, "natural_gas": 0.26, "nuclear": 0.14})
    assert result.intensity_g_per_kwh == pytest.approx(731.59, abs=1e-6)
    assert "coal 25%" in result.source and "nuclear 14%" in result.source


def test_single_source_mix_is_that_source_factor():
    factors = source_intensities_g_per_kwh()
    assert intensity_from_mix({"wind": 1.0}).intensity_g_per_kwh == factors["wind"]
    assert "world_average" not in factors and "unit" not in factors
    assert not any(key.endswith("_source") for key in factors)


@pytest.mark.parametrize("shares", [{"coal": 0.5, "nuclear": 0.4}, {"coal": 0.6, "nuclear": 0.4 + 1e-5}])
def test_mix_not_summing_to_one_is_rejected(shares):
    with pytest.raises(ConfigError, match="sum to 1"):
        intensity_from_mix(shares)


def test_mix_within_tolerance_is_accepted():
    assert intensity_from_mix({"coal": 0.5, "nuclear": 0.5 + 5e-7}).intensity_g_per_kwh > 0


def test_negative_share_is_rejected():
    with pytest.raises(ConfigError, match=">= 0"):
        intensity_from_mix({"coal": 1.5, "nuclear": -0.5})


def test_unknown_source_is_rejected_with_known_list():
    with pytest.raises(ConfigError, match="'unobtainium'") as excinfo:
        intensity_from_mix({"coal": 0.5, "unobtainium": 0.5})
    assert "natural_gas" in str(excinfo.value) and "nuclear" in str(excinfo.value)


# --- countries ------------------------------------------------------------------------------


def test_known_country_comes_from_the_package_table():
    table = json.loads((_data_dir() / "private_infra" / "global_energy_mix.json").read_text())
    result = intensity_for_country("fra")
    assert result.intensity_g_per_kwh == table["FRA"]["carbon_intensity"]
    assert "global_energy_mix.json" in result.source and "FRA" in result.source
    assert str(table["FRA"]["year"]) in result.source


@pytest.mark.parametrize("code", ["XYZ", "", "  "])
def test_unknown_country_falls_back_to_world_average(code, caplog):
    with caplog.at_level(logging.WARNING, logger="green_deploy.energy.carbon"):
        result = intensity_for_country(code)
    assert result.intensity_g_per_kwh == _world_average() == 475
    assert "world average" in result.source and "fallback" in result.source
    assert any("world average" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not carbon._ISO_3166_JSON.exists(), reason="no iso-codes table on this machine")
def test_alpha2_code_maps_to_alpha3():
    assert intensity_for_country("fr") == intensity_for_country("FRA")


def test_alpha2_without_iso_table_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(carbon, "_ISO_3166_JSON", tmp_path / "missing.json")
    result = intensity_for_country("FR")
    assert result.intensity_g_per_kwh == _world_average()
    assert "no iso-codes table" in result.source


# --- cloud regions --------------------------------------------------------------------------


def test_cloud_regions_match_impact_csv_rows():
    rows = _impact_rows()
    providers = {row["provider"] for row in rows}
    assert providers, "impact.csv has no rows"
    for provider in providers:
        for row in [r for r in rows if r["provider"] == provider][:5]:
            result = intensity_for_cloud(provider.upper(), row["region"])
            assert result.intensity_g_per_kwh == float(row["impact"])
            assert f"{provider} {row['region']}" in result.source


def test_every_impact_csv_row_is_reachable():
    rows = _impact_rows()
    for row in rows:
        assert intensity_for_cloud(row["provider"], row["region"]).intensity_g_per_kwh == float(row["impact"])


def test_gcp_region_ids_are_checked_by_value():
    by_region = {r["region"]: float(r["impact"]) for r in _impact_rows() if r["provider"] == "gcp"}
    assert intensity_for_cloud("gcp", "europe-west9").intensity_g_per_kwh == by_region["europe-west9"]
    assert intensity_for_cloud("gcp", "us-central1").intensity_g_per_kwh == by_region["us-central1"]
    assert by_region["europe-west9"] < by_region["us-central1"]  # Paris's grid is far cleaner


def test_unknown_region_lists_known_regions():
    with pytest.raises(ConfigError, match="mars-north1") as excinfo:
        intensity_for_cloud("gcp", "mars-north1")
    assert "europe-west9" in str(excinfo.value) and "us-central1" in str(excinfo.value)


def test_unknown_provider_lists_known_providers():
    known = sorted({row["provider"] for row in _impact_rows()})
    with pytest.raises(ConfigError, match="known providers") as excinfo:
        intensity_for_cloud("ovh", "gra")
    assert all(p in str(excinfo.value) for p in known)
    assert "intensity_for_country" in str(excinfo.value)


# --- PUE ------------------------------------------------------------------------------------


def test_pue_defaults_are_physical():
    assert DEFAULT_PUE["local"] == 1.0
    assert all(1.0 <= v < 2.0 for v in DEFAULT_PUE.values())
    assert pue_for("AWS") == DEFAULT_PUE["aws"]
    assert DEFAULT_PUE["gcp"] < DEFAULT_PUE["on_premises"]


def test_pue_override_wins_even_for_unlisted_target():
    assert pue_for("aws", override=1.3) == 1.3
    assert pue_for("my-colo", override=1.4) == 1.4


@pytest.mark.parametrize("bad", [0.9, 0.0, -1.0, math.nan, math.inf])
def test_pue_below_one_or_not_finite_is_rejected(bad):
    with pytest.raises(ConfigError, match=">= 1.0"):
        pue_for("local", override=bad)


def test_unknown_target_without_override_is_rejected():
    with pytest.raises(ConfigError, match="known: ") as excinfo:
        pue_for("moon-base")
    assert "local" in str(excinfo.value)


def test_default_pue_is_read_only():
    with pytest.raises(TypeError):
        DEFAULT_PUE["local"] = 2.0  # type: ignore[index]


# --- arithmetic -----------------------------------------------------------------------------


def test_unit_conversions_and_carbon():
    assert joules_to_kwh(3.6e6) == 1.0
    assert carbon_g(3.6e6, 400.0, 1.5) == pytest.approx(600.0)
    assert carbon_g(3.6e6, 400.0, 1.0) == pytest.approx(400.0)


def test_footprint_scales_per_1000_and_prices_both_parts():
    intensity = CarbonIntensity(400.0, "test")
    # 3600 J and 3.6 s per item -> 3.6e6 J (1 kWh) and 3600 s (1 h) per 1000 items.
    fp = footprint_per_1000(3600.0, 3.6, intensity, pue=1.5, price_per_kwh=0.2, instance_hour_price=3.0)
    assert fp.energy_per_1000_j == pytest.approx(3.6e6)
    assert fp.facility_energy_per_1000_j == pytest.approx(5.4e6)
    assert fp.duration_per_1000_s == pytest.approx(3600.0)
    assert fp.carbon_g_per_1000 == pytest.approx(600.0)
    assert fp.energy_cost_per_1000 == pytest.approx(1.5 * 0.2)  # facility kWh x price
    assert fp.instance_cost_per_1000 == pytest.approx(3.0)
    assert fp.cost_per_1000 == pytest.approx(3.3)
    assert (fp.pue, fp.intensity, fp.price_per_kwh, fp.instance_hour_price) == (1.5, intensity, 0.2, 3.0)


def test_footprint_without_prices_costs_nothing():
    fp = footprint_per_1000(1.0, 0.01, CarbonIntensity(100.0, "test"), pue=1.0)
    assert fp.cost_per_1000 == 0.0
    assert fp.carbon_g_per_1000 == pytest.approx(1000.0 / 3.6e6 * 100.0)


def test_footprint_rejects_bad_inputs():
    intensity = CarbonIntensity(100.0, "test")
    with pytest.raises(ConfigError):
        footprint_per_1000(1.0, 1.0, intensity, pue=0.8)
    with pytest.raises(ConfigError):
        footprint_per_1000(1.0, 1.0, intensity, pue=1.0, price_per_kwh=-0.1)
    with pytest.raises(ValueError):
        footprint_per_1000(-1.0, 1.0, intensity, pue=1.0)
    with pytest.raises(ValueError):
        footprint_per_1000(1.0, math.nan, intensity, pue=1.0)


# --- import weight --------------------------------------------------------------------------


def test_importing_and_using_carbon_does_not_import_codecarbon():
    code = (
        "import sys\n"
        "from green_deploy.energy import carbon\n"
        "carbon.intensity_for_country('FRA'); carbon.intensity_for_cloud('gcp', 'europe-west9')\n"
        "carbon.intensity_from_mix({'coal': 1.0})\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'codecarbon', 'pandas'})\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_misspelt_gcp_region_is_reachable_by_its_real_id():
    by_region = {r["region"]: float(r["impact"]) for r in _impact_rows() if r["provider"] == "gcp"}
    real = by_region.get("me-central1", by_region.get("me-cenrtal1"))
    if real is None:
        pytest.skip("this codecarbon has no Doha region")
    assert intensity_for_cloud("gcp", "me-central1").intensity_g_per_kwh == real


def test_aws_and_azure_regions_take_their_countrys_grid():
    """CodeCarbon's cloud table holds GCP only: an AWS or Azure region is costed with the grid of
    the country its data centres are in, and the source says so."""
    ireland, netherlands = intensity_for_country("IRL"), intensity_for_country("NLD")
    aws = intensity_for_cloud("aws", "eu-west-1")
    assert aws.intensity_g_per_kwh == ireland.intensity_g_per_kwh
    assert aws.source.startswith("aws eu-west-1 is in IRL") and ireland.source in aws.source
    assert intensity_for_cloud("Azure", "WestEurope").intensity_g_per_kwh == netherlands.intensity_g_per_kwh
    assert intensity_for_cloud("azure", "swedencentral").intensity_g_per_kwh < aws.intensity_g_per_kwh
    with pytest.raises(ConfigError, match="known aws regions: .*eu-west-1"):
        intensity_for_cloud("aws", "moon-1")
