"""Tables that may not exist yet: read as empty until the pipeline that writes them has run."""

from __future__ import annotations

import pandas as pd
from kedro_datasets.pandas import ParquetDataset


class OptionalParquetDataset(ParquetDataset):
    """A Parquet table that loads as an empty DataFrame while its file is missing (e.g. the search
    front before any search), so a pipeline reading it runs without it."""

    def load(self) -> pd.DataFrame:
        return super().load() if self._exists() else pd.DataFrame()
