"""Energy measurement: meters with their provenance, windows, idle baselines, carbon and cost.

Imports no ML framework, no Kedro and no cloud SDK (checked by import-linter): frameworks plug
in through the monitor's ``synchronize`` hook.

    monitor = EnergyMonitor(discover_sources(), synchronize=torch.cuda.synchronize)
    monitor.measure_idle(5.0)
    measurement = monitor.measure("resnet batch 64", lambda: model(batch), n_items_per_call=64)
    measurement.energy_per_item_j, measurement.component("gpu").source, measurement.warnings
"""

from green_deploy.energy.monitor import EnergyMonitor, IdleBaseline
from green_deploy.energy.record import ComponentEnergy, EnergyMeasurement
from green_deploy.energy.sources import discover_sources

__all__ = ["ComponentEnergy", "EnergyMeasurement", "EnergyMonitor", "IdleBaseline", "discover_sources"]
