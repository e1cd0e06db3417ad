"""Energy of federated, centralized and continual learning from a few parameters.

The model counts the energy that differs between the paradigms: training compute and the bytes
they move. Symbols (all from configuration, see ``conf/base/parameters_simulate.yml``):

* ``e_b`` J per training batch on a data-centre accelerator (``j_per_batch``, or calibrated from
  the optimize pipeline's fine-tune measurements), ``x`` the edge devices' energy per batch
  relative to it (``device_energy_factor``), ``p_dc`` / ``p_dev`` the data centre's and the
  devices' PUE, ``s`` the batch size.
* ``R = rounds_iid`` (× ``non_iid_round_multiplier`` when ``iid`` is false) rounds to the
  target accuracy, ``K`` learners per round, ``b = local_epochs_per_round × examples_per_learner
  / s`` local batches per learner and round (or ``local_batches_per_round`` when set).
* ``u = model_parameters × bytes_per_parameter`` bytes per model update; ``up`` / ``down`` the
  learners' link's uplink / downlink J per byte, ``net`` the network's J per byte moved (each
  direction).
* ``D = examples_total × raw_bytes_per_example`` raw bytes to centralize; centralized training
  runs ``B = centralized_epochs × examples_total / s`` batches.

One training::

    E_central   = B × e_b × p_dc                       (compute)
                + D × (up + net)                       (the devices upload their raw data)
    E_federated = R × K × b × e_b × x × p_dev          (compute on the devices)
                + R × K × u × (down + up + 2 × net)    (model down, update up, every round)

Continual learning (the model is trained ``N = trainings`` times)::

    E_federated_continual = N × E_federated            (federated reruns its rounds)
    E_central_continual   = N × B × e_b × p_dc + D × (up + net) × (1 + (N - 1) × f)

where ``f = new_data_fraction`` when ``upload_only_new_data`` (each retraining centralizes only
the new data) and 1 otherwise (everything is uploaded again). Carbon: data-centre compute at the
data centre's grid intensity, everything else (device compute, radio and network) at the devices'
grid intensity: gCO2e = J / 3.6e6 × g/kWh (the PUE is already in the joules).

Batches are fractional (``examples / s``): a partial last batch costs its share, which keeps the
energy continuous in every parameter so crossovers can be solved for. ``e_b`` is the energy of a
batch of ``s`` examples; changing ``s`` alone assumes it stays the same (true for small,
latency-bound models, not for compute-bound ones). Left out because they are the same for both
paradigms or small: evaluation, the server's aggregation, shipping the final model to devices.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import pandas as pd

from green_deploy.config import parse_settings
from green_deploy.energy.carbon import intensity_for_country
from green_deploy.energy.record import JOULES_PER_KWH
from green_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

PARADIGMS = ("centralized", "federated", "centralized_continual", "federated_continual")


@dataclass(frozen=True)
class ScenarioSettings:
    """The ``simulate.scenario`` section: one learning task, its data and the learners."""

    j_per_batch: float
    batch_size: int
    pue_datacenter: float
    pue_device: float
    device_energy_factor: float
    iid: bool
    rounds_iid: float
    non_iid_round_multiplier: float
    learners_per_round: int
    local_epochs_per_round: float
    local_batches_per_round: float | None
    examples_per_learner: float
    examples_total: float
    centralized_epochs: float
    model_parameters: float
    bytes_per_parameter: float
    raw_bytes_per_example: float
    trainings: int
    upload_only_new_data: bool
    new_data_fraction: float
    link: str
    network_j_per_byte: float


@dataclass(frozen=True)
class LinkEnergy:
    """Device-side radio (or NIC) energy per byte of one link type, each direction."""

    uplink_j_per_byte: float
    downlink_j_per_byte: float


@dataclass(frozen=True)
class CarbonSettings:
    """The ``simulate.carbon`` section: a country (ISO alpha-3) or a figure for each grid."""

    device_country: str
    datacenter_country: str
    device_intensity_g_per_kwh: float | None
    datacenter_intensity_g_per_kwh: float | None


@dataclass(frozen=True)
class Scenario(ScenarioSettings):
    """The settings with the chosen link's energies and both grids' intensities resolved: every
    number the model reads, so a sensitivity analysis can vary any of them."""

    uplink_j_per_byte: float
    downlink_j_per_byte: float
    device_intensity_g_per_kwh: float
    datacenter_intensity_g_per_kwh: float


@dataclass(frozen=True)
class Provenance:
    """Where the figures that are not plain settings came from, in words."""

    j_per_batch: str
    device_intensity: str
    datacenter_intensity: str


@dataclass(frozen=True)
class ParadigmEnergy:
    """One paradigm's energy (J, facility level: PUE included) and carbon (gCO2e)."""

    paradigm: str
    compute_energy_j: float
    transfer_energy_j: float
    carbon_g: float
    trainings: int

    @property
    def energy_j(self) -> float:
        return self.compute_energy_j + self.transfer_energy_j

    @property
    def energy_kwh(self) -> float:
        return self.energy_j / JOULES_PER_KWH


# Lower and upper bounds of every numeric setting (inclusive): checked on load, and the range a
# sensitivity analysis or a crossover search may not leave.
BOUNDS: Mapping[str, tuple[float, float]] = {
    "j_per_batch": (0.0, math.inf),
    "batch_size": (1, math.inf),
    "pue_datacenter": (1.0, math.inf),
    "pue_device": (1.0, math.inf),
    "device_energy_factor": (0.0, math.inf),
    "rounds_iid": (0.0, math.inf),
    "non_iid_round_multiplier": (1.0, math.inf),
    "learners_per_round": (1, math.inf),
    "local_epochs_per_round": (0.0, math.inf),
    "local_batches_per_round": (0.0, math.inf),
    "examples_per_learner": (0.0, math.inf),
    "examples_total": (0.0, math.inf),
    "centralized_epochs": (0.0, math.inf),
    "model_parameters": (0.0, math.inf),
    "bytes_per_parameter": (0.0, math.inf),
    "raw_bytes_per_example": (0.0, math.inf),
    "trainings": (1, math.inf),
    "new_data_fraction": (0.0, 1.0),
    "network_j_per_byte": (0.0, math.inf),
    "uplink_j_per_byte": (0.0, math.inf),
    "downlink_j_per_byte": (0.0, math.inf),
    "device_intensity_g_per_kwh": (0.0, math.inf),
    "datacenter_intensity_g_per_kwh": (0.0, math.inf),
}


# ---- the model -------------------------------------------------------------------------------
def rounds(s: Scenario) -> float:
    """Rounds to the target accuracy: non-IID data needs ``non_iid_round_multiplier`` times more."""
    return s.rounds_iid * (1.0 if s.iid else s.non_iid_round_multiplier)


def local_batches_per_round(s: Scenario) -> float:
    """Batches one learner trains per round."""
    if s.local_batches_per_round is not None:
        return s.local_batches_per_round
    return s.local_epochs_per_round * s.examples_per_learner / s.batch_size


def update_bytes(s: Scenario) -> float:
    """Bytes of one model (downloaded) or one update (uploaded)."""
    return s.model_parameters * s.bytes_per_parameter


def centralized_batches(s: Scenario) -> float:
    return s.centralized_epochs * s.examples_total / s.batch_size


def raw_data_bytes(s: Scenario) -> float:
    return s.examples_total * s.raw_bytes_per_example


def centralized_compute_j(s: Scenario) -> float:
    return centralized_batches(s) * s.j_per_batch * s.pue_datacenter


def centralized_upload_j(s: Scenario) -> float:
    """Centralizing the whole dataset once: the devices upload it over their link."""
    return raw_data_bytes(s) * (s.uplink_j_per_byte + s.network_j_per_byte)


def federated_compute_j(s: Scenario) -> float:
    per_learner_round_j = local_batches_per_round(s) * s.j_per_batch * s.device_energy_factor * s.pue_device
    return rounds(s) * s.learners_per_round * per_learner_round_j


def federated_transfer_j(s: Scenario) -> float:
    per_learner_round_j = update_bytes(s) * (
        s.downlink_j_per_byte + s.uplink_j_per_byte + 2.0 * s.network_j_per_byte
    )
    return rounds(s) * s.learners_per_round * per_learner_round_j


def uploads_per_life(s: Scenario) -> float:
    """How many whole datasets centralized learning uploads over ``trainings`` trainings."""
    fraction = s.new_data_fraction if s.upload_only_new_data else 1.0
    return 1.0 + (s.trainings - 1) * fraction


def paradigm_energies(s: Scenario) -> list[ParadigmEnergy]:
    """Each paradigm's energy and carbon: one training, and ``trainings`` trainings (continual)."""
    cen_compute, cen_upload = centralized_compute_j(s), centralized_upload_j(s)
    fed_compute, fed_transfer = federated_compute_j(s), federated_transfer_j(s)
    n = s.trainings
    rows = (
        ("centralized", cen_compute, cen_upload, 1),
        ("federated", fed_compute, fed_transfer, 1),
        ("centralized_continual", n * cen_compute, cen_upload * uploads_per_life(s), n),
        ("federated_continual", n * fed_compute, n * fed_transfer, n),
    )
    return [
        ParadigmEnergy(name, compute, transfer, _carbon_g(s, name, compute, transfer), trainings)
        for name, compute, transfer, trainings in rows
    ]


def comparison(s: Scenario, metric: str = "energy") -> tuple[float, float]:
    """(federated, centralized) over the scenario's whole life of ``trainings`` trainings, in J
    (``metric="energy"``) or gCO2e (``"carbon"``): what the sensitivity and crossovers compare."""
    by_name = {p.paradigm: p for p in paradigm_energies(s)}
    fed, cen = by_name["federated_continual"], by_name["centralized_continual"]
    if metric == "energy":
        return fed.energy_j, cen.energy_j
    if metric == "carbon":
        return fed.carbon_g, cen.carbon_g
    raise ValueError(f"metric must be 'energy' or 'carbon', got {metric!r}")


def energy_table(s: Scenario, provenance: Provenance) -> pd.DataFrame:
    """One row per paradigm: energy (J, kWh; compute and transfer), gCO2e, and the ratio to the
    centralized paradigm with the same number of trainings."""
    energies = paradigm_energies(s)
    by_name = {p.paradigm: p for p in energies}
    rows = []
    for p in energies:
        reference = by_name["centralized_continual" if p.paradigm.endswith("_continual") else "centralized"]
        rows.append(
            {
                "paradigm": p.paradigm,
                "trainings": p.trainings,
                "energy_j": p.energy_j,
                "energy_kwh": p.energy_kwh,
                "compute_energy_j": p.compute_energy_j,
                "transfer_energy_j": p.transfer_energy_j,
                "carbon_g": p.carbon_g,
                "energy_ratio_to_centralized": _ratio(p.energy_j, reference.energy_j),
                "carbon_ratio_to_centralized": _ratio(p.carbon_g, reference.carbon_g),
                "j_per_batch": s.j_per_batch,
                "j_per_batch_source": provenance.j_per_batch,
                "link": s.link,
                "iid": s.iid,
            }
        )
    return pd.DataFrame(rows)


def _carbon_g(s: Scenario, paradigm: str, compute_j: float, transfer_j: float) -> float:
    compute_intensity = (
        s.datacenter_intensity_g_per_kwh
        if paradigm.startswith("centralized")
        else s.device_intensity_g_per_kwh
    )
    return (compute_j * compute_intensity + transfer_j * s.device_intensity_g_per_kwh) / JOULES_PER_KWH


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf if numerator > 0 else math.nan


# ---- configuration ---------------------------------------------------------------------------
_SECTIONS = ("scenario", "links", "carbon", "calibration", "sensitivity")


@dataclass(frozen=True)
class CalibrationSettings:
    """The ``simulate.calibration`` section: take ``j_per_batch`` from the optimize pipeline's
    fine-tune measurements (``from_variants``) of ``model_id`` (null: the model with the most
    fine-tuned variants)."""

    from_variants: bool
    model_id: str | None


def check_sections(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The ``simulate`` parameters, with every top-level key known."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"simulate: parameters must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"simulate: unknown section(s) {unknown}; known: {sorted(_SECTIONS)}")
    missing = [name for name in ("scenario", "links", "carbon") if name not in config]
    if missing:
        raise ConfigError(f"simulate: missing section(s) {missing} in conf/base/parameters_simulate.yml")
    return config


def parse_scenario(
    config: Mapping[str, Any], j_per_batch: float | None = None, j_per_batch_source: str = "configured"
) -> tuple[Scenario, Provenance]:
    """The resolved scenario from the ``simulate`` parameters; ``j_per_batch`` (e.g. calibrated)
    replaces the configured value.

    Raises:
        ConfigError: an unknown or missing key, a value of the wrong kind or out of its bounds
            (negative, a PUE below 1, a fraction above 1), or an unknown link.
    """
    config = check_sections(config)
    settings = _parse_complete(ScenarioSettings, config["scenario"], "simulate.scenario")
    links = _parse_links(config["links"])
    if settings.link not in links:
        raise ConfigError(
            f"simulate.scenario: link {settings.link!r} is not in simulate.links; known: {sorted(links)}"
        )
    carbon = _parse_complete(CarbonSettings, config["carbon"], "simulate.carbon")
    device_g, device_source = _intensity(carbon.device_intensity_g_per_kwh, carbon.device_country, "device")
    dc_g, dc_source = _intensity(
        carbon.datacenter_intensity_g_per_kwh, carbon.datacenter_country, "datacenter"
    )
    values = asdict(settings)
    if j_per_batch is not None:
        values["j_per_batch"] = float(j_per_batch)
    scenario = Scenario(
        **values,
        uplink_j_per_byte=links[settings.link].uplink_j_per_byte,
        downlink_j_per_byte=links[settings.link].downlink_j_per_byte,
        device_intensity_g_per_kwh=device_g,
        datacenter_intensity_g_per_kwh=dc_g,
    )
    check_scenario(scenario)
    return scenario, Provenance(j_per_batch_source, device_source, dc_source)


def check_scenario(s: Scenario, where: str = "simulate.scenario") -> None:
    """Every number finite (or an infinite bound) and within its bounds; integers stay integers."""
    for name, (low, high) in BOUNDS.items():
        value = getattr(s, name)
        if value is None:
            continue
        if not math.isfinite(value) or not low <= value <= high:
            bounds = f">= {low:g}" if math.isinf(high) else f"between {low:g} and {high:g}"
            raise ConfigError(f"{where}: {name} must be a finite number {bounds}, got {value!r}")


def numeric_parameters(s: Scenario) -> list[str]:
    """The names of every number the model reads in this scenario (unset options left out)."""
    names = [f.name for f in fields(s) if f.name in BOUNDS and getattr(s, f.name) is not None]
    if s.local_batches_per_round is not None:
        # batches are given directly, so the epochs do not enter the model
        names.remove("local_epochs_per_round")
    if s.iid:
        names.remove("non_iid_round_multiplier")
    if not s.upload_only_new_data:
        names.remove("new_data_fraction")
    return names


def is_integer(name: str) -> bool:
    return next(f for f in fields(Scenario) if f.name == name).type == "int"


def _parse_complete(settings_class: type, raw: Any, where: str) -> Any:
    try:
        return parse_settings(settings_class, raw, where)
    except TypeError as exc:  # a missing field: the dataclass has no defaults on purpose
        declared = {f.name for f in fields(settings_class)}
        given = set(raw or {})
        raise ConfigError(f"{where}: missing setting(s) {sorted(declared - given)}") from exc


def _parse_links(raw: Any) -> dict[str, LinkEnergy]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"simulate.links must map link names to their energies, got {raw!r}")
    links = {}
    for name, values in raw.items():
        where = f"simulate.links.{name}"
        link = _parse_complete(LinkEnergy, values, where)
        for key, value in asdict(link).items():
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
        links[str(name)] = link
    return links


def _intensity(override: float | None, country: str, grid: str) -> tuple[float, str]:
    if override is not None:
        if not math.isfinite(override) or override < 0:
            raise ConfigError(
                f"simulate.carbon: {grid}_intensity_g_per_kwh must be a finite number >= 0, got {override!r}"
            )
        return override, "configured"
    intensity = intensity_for_country(country)
    return intensity.intensity_g_per_kwh, intensity.source


# ---- calibration from the optimize pipeline's measurements ------------------------------------
def calibrate_j_per_batch(
    variants: pd.DataFrame | None, model_id: str | None, configured_j_per_batch: float
) -> tuple[float, str]:
    """J per training batch from the variants table: fine-tune energy / fine-tune steps.

    A variant counts when its status is ok, its steps hold ``finetune_steps`` > 0 and its
    optimization energy is positive; the model's value is the median over its variants. The
    energy covers the whole optimization (pruning or conversion too), so it is an upper bound of
    the fine-tuning alone, on the machine and at the batch size that ran the optimize pipeline.

    Returns:
        (J per batch, provenance): the configured value with the reason when the table is
        missing, empty, or has no fine-tuned variant of ``model_id``.
    """
    per_variant = finetune_j_per_batch(variants)
    if per_variant.empty:
        logger.info("No fine-tuned variants in the variants table: j_per_batch is the configured value.")
        return configured_j_per_batch, "configured (no fine-tuned variants measured by the optimize pipeline)"
    if model_id is None:
        counts = per_variant.groupby("model_id").size()
        model_id = sorted(counts[counts == counts.max()].index)[0]
    rows = per_variant[per_variant.model_id == model_id]
    if rows.empty:
        known = ", ".join(sorted(per_variant.model_id.unique()))
        logger.warning(
            "simulate.calibration.model_id %r has no fine-tuned variant in the variants table (models "
            "that have: %s); using the configured j_per_batch.",
            model_id,
            known,
        )
        return configured_j_per_batch, f"configured ({model_id} has no fine-tuned variants; {known} have)"
    measured = rows.measured.dropna()
    kind = (
        "measured"
        if len(measured) and measured.all()
        else "partly measured"
        if len(measured) and measured.any()
        else "estimated"
    )
    value = float(rows.j_per_batch.median())
    source = (
        f"calibrated from {model_id} fine-tune, {kind} (median of {len(rows)} variants: "
        f"{', '.join(rows.variant_id)})"
    )
    return value, source


def finetune_j_per_batch(variants: pd.DataFrame | None) -> pd.DataFrame:
    """One row per fine-tuned variant: model_id, variant_id, finetune_steps, energy_j,
    j_per_batch, measured (True, False or None)."""
    columns = ["model_id", "variant_id", "finetune_steps", "energy_j", "j_per_batch", "measured"]
    needed = {"model_id", "variant_id", "steps", "optimization_total_energy_j"}
    if variants is None or variants.empty or not needed <= set(variants.columns):
        return pd.DataFrame(columns=columns)
    rows = []
    for row in variants.to_dict("records"):
        if row.get("status", "ok") != "ok":
            continue
        steps = _finetune_steps(row["steps"])
        energy_j = row["optimization_total_energy_j"]
        if steps <= 0 or energy_j is None or not math.isfinite(energy_j) or energy_j <= 0:
            continue
        measured = row.get("optimization_measured")
        rows.append(
            {
                "model_id": row["model_id"],
                "variant_id": row["variant_id"],
                "finetune_steps": steps,
                "energy_j": float(energy_j),
                "j_per_batch": float(energy_j) / steps,
                "measured": None if measured is None or pd.isna(measured) else bool(measured),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def _finetune_steps(steps: Any) -> int:
    """Total ``finetune_steps`` over a variant's steps (a JSON list of {technique, settings})."""
    if isinstance(steps, str):
        try:
            steps = json.loads(steps)
        except ValueError:
            return 0
    total = 0
    for step in steps if isinstance(steps, list | tuple) else []:
        settings = step.get("settings") if isinstance(step, Mapping) else None
        value = settings.get("finetune_steps") if isinstance(settings, Mapping) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            total += int(value)
    return total
