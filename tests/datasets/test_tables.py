"""A table a pipeline may read before the pipeline that writes it has run."""

from __future__ import annotations

import pandas as pd

from green_deploy.datasets.tables import OptionalParquetDataset


def test_a_missing_table_loads_empty_and_a_saved_one_loads_back(tmp_path):
    dataset = OptionalParquetDataset(filepath=str(tmp_path / "front.parquet"))
    assert dataset.load().empty
    table = pd.DataFrame({"variant_id": ["search_pt_a"], "energy_per_item_j": [0.001]})
    dataset.save(table)
    pd.testing.assert_frame_equal(dataset.load(), table)
