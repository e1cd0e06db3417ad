import pytest

from green_deploy.errors import ConfigError
from green_deploy.evaluate.study import ProtocolSettings, StudySettings, expand_cells

ROWS = [
    {"model_id": "m1", "variant_id": "torch_baseline", "config_sha256": "a"},
    {"model_id": "m1", "variant_id": "pt_fp16", "config_sha256": "b"},
    {"model_id": "m2", "variant_id": "torch_baseline", "config_sha256": "c"},
]


def test_every_combination_is_a_cell():
    settings = StudySettings.parse({"batch_sizes": [1, 8], "targets": ["local", "inprocess"]})
    cells = expand_cells(ROWS, settings)
    assert len(cells) == 3 * 2 * 2
    assert len({c.config_hash for c in cells}) == len(cells)


def test_subsets_from_command_line_text():
    settings = StudySettings.parse({"models": "m1", "variants": "torch_baseline pt_fp16", "batch_sizes": 4})
    cells = expand_cells(ROWS, settings)
    assert {(c.model_id, c.variant_id, c.batch_size) for c in cells} == {
        ("m1", "torch_baseline", 4),
        ("m1", "pt_fp16", 4),
    }


def test_a_changed_protocol_or_variant_gives_new_hashes():
    base = expand_cells(ROWS, StudySettings.parse({}))
    other_protocol = expand_cells(ROWS, StudySettings.parse({"protocol": {"ci_target": 0.1}}))
    changed_variant = expand_cells([{**ROWS[0], "config_sha256": "z"}, *ROWS[1:]], StudySettings.parse({}))
    assert not {c.config_hash for c in base} & {c.config_hash for c in other_protocol}
    assert base[0].config_hash != changed_variant[0].config_hash
    assert base[2:] == changed_variant[2:]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"batch_size": [1]}, "batch_size"),
        ({"targets": ["gcp"]}, "targets"),
        ({"devices": ["tpu"]}, "devices"),
        ({"batch_sizes": [0]}, "batch_sizes"),
        ({"protocol": {"ci_target": 2}}, "ci_target"),
        ({"protocol": {"min_repetitions": 1}}, "min_repetitions"),
        ({"protocol": {"repetitions": 3}}, "repetitions"),
        ({"study": "../x"}, "study"),
        ({"targets": ["local", "sagemaker"], "devices": ["cpu", "cuda"]}, "instance type"),
    ],
)
def test_bad_settings_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        StudySettings.parse(raw)


def test_gpu_cells_only_for_runtimes_that_run_there():
    rows = [
        {**ROWS[0], "runtime": "pytorch", "technique": "baseline"},
        {**ROWS[0], "variant_id": "tf_tflite_fp16", "runtime": "tflite", "config_sha256": "d"},
        {
            **ROWS[0],
            "variant_id": "pt_prune50_int8",
            "runtime": "pytorch",
            "technique": "magnitude_pruning+dynamic_int8",
            "config_sha256": "e",
        },
    ]
    cells = expand_cells(rows, StudySettings.parse({"devices": ["cpu", "cuda"], "batch_sizes": [1]}))
    assert sorted((c.variant_id, c.device) for c in cells) == [
        ("pt_prune50_int8", "cpu"),
        ("tf_tflite_fp16", "cpu"),
        ("torch_baseline", "cpu"),
        ("torch_baseline", "cuda"),
    ]


def test_unknown_models_or_variants_are_named():
    with pytest.raises(ConfigError, match="m9"):
        expand_cells(ROWS, StudySettings.parse({"models": ["m9"]}))


def test_protocol_defaults_are_valid():
    ProtocolSettings().check()


def test_a_target_scope_gives_a_costly_target_a_few_paired_cells():
    rows = [{**row, "runtime": "pytorch"} for row in ROWS] + [
        {"model_id": "m1", "variant_id": "tf_tflite_fp16", "runtime": "tflite", "config_sha256": "d"}
    ]
    settings = StudySettings.parse(
        {
            "targets": ["local", "azureml_server", "sagemaker_torchserve"],
            "batch_sizes": [1],
            "target_scope": {
                "azureml_server": {"models": "m1"},
                "sagemaker_torchserve": {"models": ["m1"], "variants": "torch_baseline tf_tflite_fp16"},
            },
        }
    )
    by_target: dict[str, set] = {}
    for cell in expand_cells(rows, settings):
        by_target.setdefault(cell.target, set()).add((cell.model_id, cell.variant_id))
    assert len(by_target["local"]) == 4  # a target not scoped takes every cell
    assert by_target["azureml_server"] == {
        ("m1", "torch_baseline"),
        ("m1", "pt_fp16"),
        ("m1", "tf_tflite_fp16"),
    }
    # TorchServe serves PyTorch only: the TFLite variant in its scope is left out (logged with the reason)
    assert by_target["sagemaker_torchserve"] == {("m1", "torch_baseline")}


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({"gcp": {"models": ["m1"]}}, r"target_scope names \['gcp'\], which are not targets"),
        ({"local": {"model": ["m1"]}}, "model"),
    ],
)
def test_bad_target_scopes_name_the_key(scope, message):
    with pytest.raises(ConfigError, match=message):
        StudySettings.parse({"targets": ["local"], "target_scope": scope})


def test_a_scope_naming_an_unknown_variant_is_said_and_gives_no_cell(caplog):
    settings = StudySettings.parse(
        {
            "targets": ["local", "azureml_server"],
            "target_scope": {"azureml_server": {"variants": ["pt_typo"]}},
        }
    )
    cells = expand_cells(ROWS, settings)
    assert {c.target for c in cells} == {"local"}
    assert "evaluate.target_scope.azureml_server.variants names ['pt_typo']" in caplog.text


def test_a_scope_of_a_target_not_measured_is_ignored():
    settings = StudySettings.parse(
        {"targets": ["local"], "target_scope": {"azureml_server": {"models": ["m9"]}}}
    )
    assert len(expand_cells(ROWS, settings)) == 3 * 2


def test_cells_under_load_come_beside_the_one_at_a_time_cells():
    settings = StudySettings.parse(
        {
            "targets": ["local", "local_unbatched"],
            "batch_sizes": [1, 8],
            "target_scope": {"local_unbatched": {"variants": ["torch_baseline"]}},
            "under_load": {"concurrency": 16, "variants": "torch_baseline", "batch_sizes": 1},
        }
    )
    loaded = {
        (c.model_id, c.target, c.batch_size) for c in expand_cells(ROWS, settings) if c.concurrency == 16
    }
    assert loaded == {
        ("m1", "local", 1),
        ("m2", "local", 1),
        ("m1", "local_unbatched", 1),
        ("m2", "local_unbatched", 1),
    }
    one_at_a_time = [c for c in expand_cells(ROWS, settings) if c.concurrency == 1]
    assert len(one_at_a_time) == 3 * 2 + 2 * 2
    # a cell measured one request at a time keeps the hash it had before concurrency was a factor
    before = expand_cells(ROWS, StudySettings.parse({"batch_sizes": [1, 8]}))
    assert {c.config_hash for c in before} <= {c.config_hash for c in one_at_a_time}
    assert len({c.config_hash for c in expand_cells(ROWS, settings)}) == len(expand_cells(ROWS, settings))


def test_under_load_targets_must_be_measured():
    with pytest.raises(ConfigError, match=r"under_load.targets names \['azureml_server'\]"):
        StudySettings.parse(
            {"targets": ["local"], "under_load": {"concurrency": 4, "targets": ["azureml_server"]}}
        )
