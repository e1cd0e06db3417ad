"""Carbon, facility overhead (PUE) and cost: turning measured joules into gCO2e and money.

Carbon intensities come from the data files CodeCarbon ships (its per-source factors, its
per-country energy mix and its cloud-region table), read as plain files: importing CodeCarbon
itself pulls in pandas, psutil and its hardware backends, which the measuring core must not pay
for. No figure from those tables is copied here, so upgrading CodeCarbon upgrades the data.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from green_deploy.energy.codecarbon_data import codecarbon_data_dir
from green_deploy.energy.record import JOULES_PER_KWH
from green_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

ITEMS_PER_FOOTPRINT = 1000
_MIX_TOLERANCE = 1e-6

_SOURCE_TABLE = "carbon_intensity_per_source.json"
_COUNTRY_TABLE = "global_energy_mix.json"
_CLOUD_TABLE = "cloud/impact.csv"
# Debian/Ubuntu's iso-codes package; used only to accept alpha-2 country codes, and optional.
_ISO_3166_JSON = Path("/usr/share/iso-codes/json/iso_3166-1.json")

# CodeCarbon's impact.csv misspells one region id; accept the real id while the typo lasts. The
# alias is used only when the real id is absent, so a fixed table makes it dead weight, not wrong.
_REGION_ALIASES: Mapping[tuple[str, str], str] = MappingProxyType({("gcp", "me-central1"): "me-cenrtal1"})

# Power usage effectiveness: facility energy / IT energy. Published fleet figures, not per site.
DEFAULT_PUE: Mapping[str, float] = MappingProxyType(
    {
        # Google: fleet-wide trailing-twelve-month PUE 1.09 for 2024 (1.10 in 2022 and 2023),
        # Google 2025 Environmental Report and https://www.google.com/about/datacenters/efficiency/
        "gcp": 1.09,
        # AWS: global data-centre PUE 1.15 for 2023 (best site 1.04, in Europe),
        # https://sustainability.aboutamazon.com/products-services/aws-cloud (2024).
        "aws": 1.15,
        # Microsoft: newest data centres designed for 1.12; fleet operational average ~1.18,
        # https://datacenters.microsoft.com/sustainability/efficiency/ (2024). The operational
        # figure is used: deployments land on the existing fleet, not only on new halls.
        "azure": 1.18,
        # Uptime Institute Global Data Center Survey: industry average PUE 1.56 (2024; 1.58 in
        # 2023), https://uptimeinstitute.com/resources/research-and-reports/uptime-institute-global-data-center-survey-results-2024
        "on_premises": 1.56,
        # The meters already see everything that is counted; no facility overhead (cooling, power
        # conversion, lighting) is modelled for a workstation or a machine under one's desk.
        "local": 1.0,
    }
)


@dataclass(frozen=True)
class CarbonIntensity:
    """Grams of CO2-equivalent per kWh of electricity, and where that figure came from."""

    intensity_g_per_kwh: float
    source: str


@dataclass(frozen=True)
class Footprint:
    """Energy, carbon and cost of 1000 items, with every input that produced them.

    ``facility_energy_per_1000_j`` is the IT energy times ``pue``; carbon and the energy part of
    the cost use it. ``instance_cost_per_1000`` assumes the instance does nothing but these
    inferences while it is billed, so it charges the whole instance time to them.
    """

    energy_per_1000_j: float
    facility_energy_per_1000_j: float
    duration_per_1000_s: float
    carbon_g_per_1000: float
    energy_cost_per_1000: float
    instance_cost_per_1000: float
    cost_per_1000: float
    pue: float
    intensity: CarbonIntensity
    price_per_kwh: float
    instance_hour_price: float


def joules_to_kwh(energy_j: float) -> float:
    """Convert joules to kilowatt-hours (1 kWh = 3.6e6 J)."""
    return energy_j / JOULES_PER_KWH


def carbon_g(energy_j: float, intensity_g_per_kwh: float, pue: float) -> float:
    """gCO2e of ``energy_j`` measured at the IT equipment, grossed up by the facility's PUE."""
    return joules_to_kwh(energy_j) * pue * intensity_g_per_kwh


def pue_for(target: str, override: float | None = None) -> float:
    """The PUE to apply for a deployment target; ``override`` (e.g. a site's own figure) wins.

    Raises:
        ConfigError: the override is below 1.0 or not finite, or the target has no default.
    """
    if override is not None:
        _check_pue(override, f"pue override for {target!r}")
        return float(override)
    key = target.strip().lower()
    if key not in DEFAULT_PUE:
        raise ConfigError(
            f"no default PUE for target {target!r}; known: {', '.join(sorted(DEFAULT_PUE))}. "
            "Give the site's own PUE as an override."
        )
    return DEFAULT_PUE[key]


def footprint_per_1000(
    energy_per_item_j: float,
    duration_per_item_s: float,
    intensity: CarbonIntensity,
    pue: float,
    price_per_kwh: float = 0.0,
    instance_hour_price: float = 0.0,
) -> Footprint:
    """Energy, carbon and cost of 1000 items from the per-item energy and time.

    Cost is facility energy (kWh) x ``price_per_kwh`` plus instance time (hours) x
    ``instance_hour_price``, where instance time is ``duration_per_item_s`` x 1000 / 3600 h:
    this assumes the instance is busy only with these inferences, and charges idle billed time
    to nobody. Prices are in one currency's units, which the result keeps.

    Raises:
        ConfigError: a price is negative or not finite, or ``pue`` is below 1.0.
        ValueError: the measured energy or duration is negative or not finite.
    """
    for name, value in (
        ("energy_per_item_j", energy_per_item_j),
        ("duration_per_item_s", duration_per_item_s),
    ):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    for name, value in (("price_per_kwh", price_per_kwh), ("instance_hour_price", instance_hour_price)):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    _check_pue(pue, "pue")

    energy_j = energy_per_item_j * ITEMS_PER_FOOTPRINT
    duration_s = duration_per_item_s * ITEMS_PER_FOOTPRINT
    facility_energy_j = energy_j * pue
    energy_cost = joules_to_kwh(facility_energy_j) * price_per_kwh
    instance_cost = duration_s / 3600.0 * instance_hour_price
    return Footprint(
        energy_per_1000_j=energy_j,
        facility_energy_per_1000_j=facility_energy_j,
        duration_per_1000_s=duration_s,
        carbon_g_per_1000=carbon_g(energy_j, intensity.intensity_g_per_kwh, pue),
        energy_cost_per_1000=energy_cost,
        instance_cost_per_1000=instance_cost,
        cost_per_1000=energy_cost + instance_cost,
        pue=pue,
        intensity=intensity,
        price_per_kwh=price_per_kwh,
        instance_hour_price=instance_hour_price,
    )


def intensity_for_country(iso_code: str) -> CarbonIntensity:
    """The grid carbon intensity of a country, from CodeCarbon's per-country energy mix.

    Takes an ISO 3166-1 alpha-3 code (``"FRA"``), any case; alpha-2 (``"FR"``) too where the
    system's iso-codes table is installed. An unknown or empty code gives the world average with
    a warning rather than an error: a footprint must always be computable, and the source string
    says it is a fallback.
    """
    code = (iso_code or "").strip().upper()
    if not code:
        return _world_average("no country code given")
    if len(code) == 2:
        alpha2_map = _alpha2_to_alpha3(str(_ISO_3166_JSON))
        if code not in alpha2_map:
            why = (
                "not an ISO 3166-1 alpha-2 code" if alpha2_map else f"no iso-codes table at {_ISO_3166_JSON}"
            )
            return _world_average(f"alpha-2 code {code!r} could not be mapped to alpha-3: {why}")
        code = alpha2_map[code]
    entry = _country_table().get(code)
    if entry is None or entry.get("carbon_intensity") is None:
        return _world_average(f"{code!r} is not in codecarbon {_COUNTRY_TABLE}")
    label = " ".join(str(part) for part in (code, entry.get("country_name")) if part)
    return CarbonIntensity(
        intensity_g_per_kwh=float(entry["carbon_intensity"]),
        source=f"codecarbon {_COUNTRY_TABLE}: {label} ({entry.get('year', 'year unknown')})",
    )


# Where each region's data centres are (the providers' region lists), for providers CodeCarbon's
# cloud table leaves out (3.3.2 holds GCP only): their regions take their country's grid.
REGION_COUNTRIES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "aws": {
            "us-east-1": "USA",
            "us-east-2": "USA",
            "us-west-1": "USA",
            "us-west-2": "USA",
            "ca-central-1": "CAN",
            "sa-east-1": "BRA",
            "eu-west-1": "IRL",
            "eu-west-2": "GBR",
            "eu-west-3": "FRA",
            "eu-central-1": "DEU",
            "eu-central-2": "CHE",
            "eu-north-1": "SWE",
            "eu-south-1": "ITA",
            "eu-south-2": "ESP",
            "ap-northeast-1": "JPN",
            "ap-northeast-2": "KOR",
            "ap-southeast-1": "SGP",
            "ap-southeast-2": "AUS",
            "ap-south-1": "IND",
        },
        "azure": {
            "eastus": "USA",
            "eastus2": "USA",
            "westus": "USA",
            "westus2": "USA",
            "westus3": "USA",
            "centralus": "USA",
            "southcentralus": "USA",
            "canadacentral": "CAN",
            "brazilsouth": "BRA",
            "westeurope": "NLD",
            "northeurope": "IRL",
            "uksouth": "GBR",
            "francecentral": "FRA",
            "germanywestcentral": "DEU",
            "swedencentral": "SWE",
            "norwayeast": "NOR",
            "switzerlandnorth": "CHE",
            "polandcentral": "POL",
            "italynorth": "ITA",
            "japaneast": "JPN",
            "koreacentral": "KOR",
            "southeastasia": "SGP",
            "australiaeast": "AUS",
            "centralindia": "IND",
        },
    }
)


def _intensity_of_region_country(provider: str, region: str) -> CarbonIntensity:
    countries = REGION_COUNTRIES[provider]
    if region not in countries:
        raise ConfigError(
            f"region {region!r} of {provider} is not known here (it is not in codecarbon {_CLOUD_TABLE} "
            f"either); known {provider} regions: {', '.join(sorted(countries))}"
        )
    country = intensity_for_country(countries[region])
    return CarbonIntensity(
        intensity_g_per_kwh=country.intensity_g_per_kwh,
        source=f"{provider} {region} is in {countries[region]}: {country.source}",
    )


def intensity_for_cloud(provider: str, region: str) -> CarbonIntensity:
    """The carbon intensity of a cloud region, from CodeCarbon's ``cloud/impact.csv``; for a
    provider that table leaves out, its region's country's grid (``REGION_COUNTRIES``).

    Raises:
        ConfigError: the provider or region is not in the table; the message lists what is.
    """
    table = _cloud_table()
    provider_key = provider.strip().lower()
    region_key = region.strip().lower()
    regions = table.get(provider_key)
    if regions is None and provider_key in REGION_COUNTRIES:
        return _intensity_of_region_country(provider_key, region_key)
    if regions is None:
        raise ConfigError(
            f"cloud provider {provider!r} is not in codecarbon {_CLOUD_TABLE} "
            f"(codecarbon {_codecarbon_version()}); known providers: {', '.join(sorted(table))}. "
            "For a provider that publishes no per-region figures, use the country of the region: "
            "intensity_for_country('<ISO alpha-3>')."
        )
    if region_key not in regions:
        region_key = _REGION_ALIASES.get((provider_key, region_key), region_key)
    row = regions.get(region_key)
    if row is None:
        raise ConfigError(
            f"region {region!r} of {provider_key} is not in codecarbon {_CLOUD_TABLE}; "
            f"known {provider_key} regions: {', '.join(sorted(regions))}"
        )
    place = ", ".join(part for part in (row.get("city"), row.get("country_name")) if part)
    detail = "; ".join(part for part in (place, row.get("source")) if part)
    return CarbonIntensity(
        intensity_g_per_kwh=float(row["impact"]),
        source=f"codecarbon {_CLOUD_TABLE}: {provider_key} {region_key}" + (f" ({detail})" if detail else ""),
    )


def intensity_from_mix(shares: Mapping[str, float]) -> CarbonIntensity:
    """The carbon intensity of an electricity mix, weighting CodeCarbon's per-source factors.

    ``shares`` maps source names of ``carbon_intensity_per_source.json`` (``coal``,
    ``natural_gas``, ``nuclear``, ...) to fractions that sum to 1.

    Raises:
        ConfigError: a source is unknown, a share is negative, or the shares do not sum to 1.
    """
    factors = source_intensities_g_per_kwh()
    unknown = sorted(set(shares) - set(factors))
    if unknown:
        raise ConfigError(
            f"unknown energy source(s) {', '.join(map(repr, unknown))} in the mix; "
            f"known: {', '.join(sorted(factors))}"
        )
    bad = {name: share for name, share in shares.items() if not math.isfinite(share) or share < 0}
    if bad:
        raise ConfigError(f"mix shares must be finite fractions >= 0, got {bad}")
    total = math.fsum(shares.values())
    if abs(total - 1.0) > _MIX_TOLERANCE:
        raise ConfigError(
            f"mix shares must sum to 1 (within {_MIX_TOLERANCE:g}), got {total!r}: {dict(shares)}"
        )
    intensity = math.fsum(share * factors[name] for name, share in shares.items())
    parts = ", ".join(f"{name} {share * 100:g}%" for name, share in shares.items() if share > 0)
    return CarbonIntensity(
        intensity_g_per_kwh=intensity,
        source=f"energy mix: {parts} (codecarbon {_SOURCE_TABLE})",
    )


def source_intensities_g_per_kwh() -> Mapping[str, float]:
    """Per-source lifecycle factors from CodeCarbon, in g/kWh, without the world average."""
    table = _source_table()
    return MappingProxyType(
        {
            key: float(value)
            for key, value in table.items()
            if isinstance(value, int | float) and not key.endswith("_source") and key != "world_average"
        }
    )


def _world_average(reason: str) -> CarbonIntensity:
    logger.warning("Carbon intensity: %s; using the world average instead.", reason)
    return CarbonIntensity(
        intensity_g_per_kwh=float(_source_table()["world_average"]),
        source=f"world average (codecarbon {_SOURCE_TABLE}), fallback: {reason}",
    )


def _check_pue(pue: float, what: str) -> None:
    if not math.isfinite(pue) or pue < 1.0:
        raise ConfigError(
            f"{what} must be a finite number >= 1.0 (facility energy cannot be less than IT energy), got {pue!r}"
        )


def _codecarbon_data_dir() -> Path:
    folder = codecarbon_data_dir()
    if folder is None:
        raise ConfigError(
            "codecarbon is not installed; its data tables supply the carbon intensities. "
            "Install the project's dependencies (codecarbon>=3)."
        )
    return folder


@cache
def _codecarbon_version() -> str:
    try:
        return importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


@cache
def _source_table() -> dict[str, Any]:
    return _read_json(_codecarbon_data_dir() / "private_infra" / _SOURCE_TABLE)


@cache
def _country_table() -> dict[str, dict[str, Any]]:
    return _read_json(_codecarbon_data_dir() / "private_infra" / _COUNTRY_TABLE)


@cache
def _cloud_table() -> dict[str, dict[str, dict[str, str]]]:
    """Rows of impact.csv by provider, then region id (both lower case)."""
    path = _codecarbon_data_dir() / _CLOUD_TABLE
    table: dict[str, dict[str, dict[str, str]]] = {}
    # utf-8-sig: the shipped file starts with a byte-order mark, which would hide the
    # "provider" column name.
    with path.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            table.setdefault(row["provider"].strip().lower(), {})[row["region"].strip().lower()] = row
    return table


@cache
def _alpha2_to_alpha3(path: str) -> Mapping[str, str]:
    """Alpha-2 to alpha-3 from Debian's iso-codes, or an empty map where it is not installed."""
    try:
        entries = _read_json(Path(path))["3166-1"]
    except (OSError, KeyError, ValueError) as exc:
        logger.info("No ISO 3166 table at %s (%s); alpha-2 country codes are not accepted.", path, exc)
        return MappingProxyType({})
    return MappingProxyType({e["alpha_2"].upper(): e["alpha_3"].upper() for e in entries if "alpha_2" in e})


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return json.load(f)
