import pandas as pd
import pytest

from green_deploy.evaluate.summary import energy_provenance
from green_deploy.evaluate.tracking import cell_energy_provenance

GPU_COUNTER = "nvml_counter_edge_corrected"
CPU_ESTIMATE = "cpu_time_tdp_estimate(5.31 W/thread)"


def _cell(gpu_measured: bool | None, cpu_measured: bool = False) -> dict:
    return {
        "gpu_source": GPU_COUNTER if gpu_measured is not None else None,
        "gpu_measured": gpu_measured,
        "cpu_source": CPU_ESTIMATE if not cpu_measured else "rapl",
        "cpu_measured": cpu_measured,
        "dram_source": None,
        "dram_measured": None,
        "energy_measured": bool(gpu_measured is not False and cpu_measured),
        "intensity_source": "codecarbon global_energy_mix.json",
    }


@pytest.mark.parametrize(
    ("cells", "table_says", "cell_says"),
    [
        ([_cell(None)], f"ESTIMATED (no hardware meter): {CPU_ESTIMATE}", f"estimated: {CPU_ESTIMATE}"),
        (
            [_cell(True, cpu_measured=True)],
            f"measured: rapl, {GPU_COUNTER}",
            f"measured: rapl, {GPU_COUNTER}",
        ),
        # the GPU study: the counter measured the GPU, the CPU beside it is an estimate
        (
            [_cell(True)],
            f"partly measured: cpu ESTIMATED ({CPU_ESTIMATE}); gpu measured ({GPU_COUNTER})",
            f"partly measured: cpu estimated ({CPU_ESTIMATE}), gpu measured ({GPU_COUNTER})",
        ),
    ],
)
def test_energy_provenance_names_what_each_component_was(cells, table_says, cell_says):
    assert energy_provenance(pd.DataFrame(cells)) == table_says
    assert cell_energy_provenance(cells[0]) == cell_says


def test_a_component_measured_in_some_cells_only_says_so():
    table = pd.DataFrame([_cell(True), _cell(False)])
    assert energy_provenance(table) == (
        f"partly measured: cpu ESTIMATED ({CPU_ESTIMATE}); gpu partly measured ({GPU_COUNTER})"
    )
