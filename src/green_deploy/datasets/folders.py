"""A dataset for model files that the library has already written: it records where they are
and logs the folders to the active MLflow run (kedro-mlflow opens it), so a run holds the
artifacts it built and nothing is written twice on disk."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class LoggedFoldersDataset(AbstractDataset[dict[str, str], dict[str, str]]):
    """Saves ``{name: folder}`` as a JSON index at ``filepath`` and, when ``log_to_mlflow`` and a
    run is active, logs every folder under ``<artifact_path>/<name>``. Loads the index."""

    def __init__(
        self,
        filepath: str,
        artifact_path: str = "",
        log_to_mlflow: bool = True,
        metadata: dict[str, Any] | None = None,
    ):
        self._filepath = Path(filepath)
        self._artifact_path = artifact_path
        self._log_to_mlflow = log_to_mlflow
        self.metadata = metadata

    def load(self) -> dict[str, str]:
        try:
            return json.loads(self._filepath.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"cannot read the folder index {self._filepath}: {error}") from error

    def save(self, data: dict[str, str]) -> None:
        missing = [folder for folder in data.values() if not Path(folder).is_dir()]
        if missing:
            raise DatasetError(f"folders to record do not exist: {missing[:5]}")
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        self._filepath.write_text(json.dumps(data, indent=2, sort_keys=True))
        if self._log_to_mlflow:
            import mlflow

            if mlflow.active_run() is not None:
                for name, folder in sorted(data.items()):
                    mlflow.log_artifacts(folder, artifact_path=f"{self._artifact_path}/{name}".strip("/"))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "artifact_path": self._artifact_path}
