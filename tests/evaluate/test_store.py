import json

import pytest

from green_deploy.errors import ArtifactError
from green_deploy.evaluate.store import StudyStore


def test_a_saved_cell_reads_back_and_is_never_overwritten(tmp_path):
    store = StudyStore(tmp_path)
    store.save_cell("h1", {"x": 1}, [{"r": 0}])
    assert store.cell("h1") == {"row": {"x": 1}, "repetitions": [{"r": 0}]}
    with pytest.raises(ArtifactError, match="never overwritten"):
        store.save_cell("h1", {"x": 2}, [])
    assert store.cell("h1")["row"] == {"x": 1}
    assert [c["row"] for c in store.cells()] == [{"x": 1}]


def test_a_corrupt_cell_is_moved_aside_and_measured_again(tmp_path, caplog):
    store = StudyStore(tmp_path)
    path = store.save_cell("h1", {"x": 1}, [])
    path.write_text('{"row": {"x"')
    assert store.cell("h1") is None
    assert "moved to" in caplog.text
    assert [p.name for p in path.parent.iterdir()] != ["h1.json"]
    store.save_cell("h1", {"x": 3}, [])  # the place is free again
    assert json.loads(path.read_text())["row"] == {"x": 3}


def test_partial_writes_of_a_killed_run_are_removed(tmp_path):
    store = StudyStore(tmp_path)
    store.save_cell("h1", {"x": 1}, [])
    (tmp_path / "cells" / "tmpabc.tmp").write_text("{")
    assert store.remove_partial_writes() == 1
    assert [p.name for p in (tmp_path / "cells").iterdir()] == ["h1.json"]
