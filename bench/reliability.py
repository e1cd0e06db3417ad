"""Write bench/results/reliability.md: every bad input the test suite tries, and the message a user
sees for each, produced here by the same library calls, a real server on loopback and real
processes (a tiny ViT and tiny ONNX/TFLite/Keras models written to a temporary folder).

Usage: python bench/reliability.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from green_deploy.evaluate.summary import markdown_table

PROJECT = Path(__file__).resolve().parents[1]
OUTPUT = PROJECT / "bench/results/reliability.md"
ROWS: list[dict[str, str]] = []


def probe(kind: str, case: str, test: str) -> Callable[[Callable[[], str]], None]:
    """Run the decorated function now: it returns what the user sees (an error's message, a reply)."""

    def run(function: Callable[[], str]) -> None:
        try:
            seen = function()
        except Exception as error:  # noqa: BLE001 - the message is what is recorded
            seen = f"{type(error).__name__}: {error}"
        ROWS.append(
            {
                "kind": kind,
                "case": case,
                "what the user sees": " ".join(str(seen).split())[:400],
                "test": test,
            }
        )

    return run


def expect_error(call: Callable[[], object]) -> str:
    try:
        call()
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"
    return "(no error: ACCEPTED)"


def configuration() -> None:
    from green_deploy.deploy.runner import DeploySettings, build_deployers
    from green_deploy.evaluate.study import StudySettings
    from green_deploy.optimize.spec import parse_variant, parse_variants, planned_variants, select_variants
    from green_deploy.pipelines.estimate.nodes import estimate_energy
    from green_deploy.pipelines.optimize.nodes import optimize_zoo_model
    from green_deploy.pipelines.tradeoff.nodes import report_study
    from green_deploy.pipelines.zoo.nodes import build_model
    from green_deploy.search.study import SearchSettings
    from green_deploy.serving.model import check_devices_here
    from green_deploy.simulate.model import parse_scenario
    from green_deploy.zoo.data import load_dataset
    from green_deploy.zoo.spec import select_entry

    variants = parse_variants({"pt_bf16": {"framework": "torch", "technique": "half_precision"}})
    cases = {
        "optimize: a misspelt top-level key (optimize.onlyy)": lambda: optimize_zoo_model(
            {}, {"onlyy": "pt_fp16", "variants": {}}, "m"
        ),
        "optimize.run: an unknown key": lambda: optimize_zoo_model(
            {}, {"run": {"check_exampels": 5}, "variants": {}}, "m"
        ),
        "optimize.only: an undeclared variant": lambda: select_variants(variants, "pt_fp8"),
        "optimize.plan: an undeclared variant": lambda: planned_variants(
            variants, {"pt_fp8": "all"}, "m", ["m"]
        ),
        "optimize.plan: an unknown model": lambda: planned_variants(
            variants, {"pt_bf16": ["resnet"]}, "m", ["m"]
        ),
        "optimize.variants: an unknown technique": lambda: parse_variant(
            "x", {"framework": "torch", "technique": "fp8"}
        ),
        "optimize.variants: a TensorFlow technique under torch": lambda: parse_variant(
            "x", {"framework": "torch", "technique": "tflite"}
        ),
        "optimize.variants: a step after a serializing one": lambda: parse_variant(
            "x", {"framework": "torch", "steps": [{"technique": "onnx"}, {"technique": "dynamic_int8"}]}
        ),
        "zoo: a misspelt top-level key": lambda: build_model({"modles": {}}, "m"),
        "zoo.parity: an unknown key": lambda: build_model({"models": {}, "parity": {"atool": 1}}, "m"),
        "zoo: a model id that is not in the zoo": lambda: select_entry({"resnet_fmnist": {}}, "resnet"),
        "zoo.datasets: an unknown dataset setting": lambda: load_dataset("fashion_mnist", {"max_trian": 5}),
        "evaluate: an unknown key": lambda: StudySettings.parse({"batch_size": [1]}),
        "evaluate.protocol: a CI target out of range": lambda: StudySettings.parse(
            {"protocol": {"ci_target": 5}}
        ),
        "evaluate.targets: an unknown target": lambda: StudySettings.parse({"targets": ["gcp"]}),
        "evaluate.batch_sizes: zero": lambda: StudySettings.parse({"batch_sizes": [0]}),
        "evaluate.accuracy_max_items: zero": lambda: StudySettings.parse({"accuracy_max_items": 0}),
        "evaluate.devices: cuda on a machine without one": lambda: check_devices_here(
            ["cuda"], "evaluate.devices"
        ),
        "deploy: an unknown key": lambda: DeploySettings.parse({"target": ["local"]}),
        "deploy.local.keras_mode: an unknown mode": lambda: build_deployers(
            DeploySettings.parse({"targets": ["local"]}), {"local": {"keras_mode": "jit"}}
        ),
        "deploy.targets: sagemaker without its section": lambda: build_deployers(
            DeploySettings.parse({"targets": ["sagemaker"]}), {}
        ),
        "search: an unknown key": lambda: SearchSettings.parse({"samplr": "tpe"}),
        "search.storage: a path instead of a URL": lambda: SearchSettings.parse(
            {"storage": "data/optuna.db"}
        ),
        "tradeoff: an unknown key": lambda: report_study(
            pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), {"titel": "x"}
        ),
        "estimate: an unknown key": lambda: estimate_energy({}, pd.DataFrame(), {"device": "h100"}),
        "simulate: an unknown section": lambda: parse_scenario({"sceanrio": {}}),
    }
    for case, call in cases.items():
        probe("configuration", case, "tests/pipelines/test_node_settings.py, tests/*/test_*settings*")(
            lambda call=call: expect_error(call)
        )


def artifacts(work: Path) -> None:
    from green_deploy.serving.model import load_model_files
    from green_deploy.zoo.artifacts import load_keras_model, load_torch_model

    tiny = _tiny_vit_variant(work)
    folder = work / "broken" / "tiny_vit" / "pt_prune50"
    shutil.copytree(tiny, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    probe("artifact", "a variant's safetensors truncated", "tests/optimize/test_runner.py")(
        lambda: expect_error(lambda: load_model_files(folder, "pytorch"))
    )
    probe("artifact", "a variant's files missing", "tests/runtimes/test_base.py")(
        lambda: expect_error(
            lambda: load_model_files(work / "missing" / "tiny_vit" / "pt_onnx_fp32", "onnxruntime")
        )
    )
    for runtime, variant, file, data in (
        ("onnxruntime", "pt_onnx_fp32", "model.onnx", _onnx_bytes()),
        ("tflite", "tf_tflite_fp32", "model.tflite", _tflite_bytes()),
    ):
        target = work / "truncated" / "tiny_model" / variant
        target.mkdir(parents=True)
        (target / file).write_bytes(data[: len(data) // 2])
        probe("artifact", f"a truncated {file}", "tests/runtimes/test_base.py")(
            lambda target=target, runtime=runtime: expect_error(lambda: load_model_files(target, runtime))
        )
    keras = work / "zoo" / "model.keras"
    keras.parent.mkdir(parents=True)
    keras.write_bytes(b"PK\x03\x04 not a keras archive")
    probe("artifact", "a zoo model's .keras corrupt", "tests/zoo/test_artifacts.py")(
        lambda: expect_error(lambda: load_keras_model(keras))
    )
    probe("artifact", "a zoo model's torch folder missing", "tests/zoo/test_artifacts.py")(
        lambda: expect_error(lambda: load_torch_model(work / "zoo" / "torch"))
    )
    probe("artifact", "a variant changed after optimize recorded it", "tests/evaluate/test_runner.py")(
        lambda: _changed_after_optimize(tiny, work)
    )
    probe("artifact", "a dataset file that differs from its manifest", "tests/zoo/data/test_manifest.py")(
        lambda: _changed_dataset(work)
    )


def requests(work: Path) -> None:
    from green_deploy.deploy import Variant
    from green_deploy.deploy.local import LocalDeployer, LocalSettings
    from green_deploy.serving.model import InputSpec

    tiny = _tiny_vit_variant(work)
    local = LocalDeployer(LocalSettings(gpu_energy=False), work / "deploy")
    deployment = local.deploy(Variant.from_folder(tiny, InputSpec("float32", (1, 28, 28))))
    host, port = deployment.resources["base_url"].removeprefix("http://").split(":")
    good = np.zeros((1, 1, 28, 28), np.float32)
    cases = {
        "a body that is not JSON": (b"POST /v1/predict", {"Content-Type": "application/json"}, b"{inputs: ]"),
        'JSON without "inputs"': (
            b"POST /v1/predict",
            {"Content-Type": "application/json"},
            b'{"input": []}',
        ),
        "items of the wrong shape": (
            b"POST /v1/predict",
            {"Content-Type": "application/json"},
            json.dumps({"inputs": np.zeros((1, 1, 14, 28)).tolist()}).encode(),
        ),
        "strings instead of numbers": (
            b"POST /v1/predict",
            {"Content-Type": "application/json"},
            json.dumps({"inputs": [["a"]]}).encode(),
        ),
        "more items than the server takes": (
            b"POST /v1/predict",
            {"Content-Type": "application/x-npy"},
            _npy(np.zeros((300, 1, 28, 28), np.float32)),
        ),
        "a .npy of another dtype": (
            b"POST /v1/predict",
            {"Content-Type": "application/x-npy"},
            _npy(good.astype(np.int64)),
        ),
        "a pickled .npy (object array)": (
            b"POST /v1/predict",
            {"Content-Type": "application/x-npy"},
            _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True),
        ),
        "an unsupported content type": (b"POST /v1/predict", {"Content-Type": "text/csv"}, b"1,2,3"),
        "a model name the server does not serve": (
            b"POST /v1/models/resnet/predict",
            {"Content-Type": "application/x-npy"},
            _npy(good),
        ),
        "an unknown route": (b"GET /v2/predict", {}, b""),
        "Content-Length: abc": (b"POST /v1/predict", {"Content-Length": "abc"}, None),
        "a body larger than Content-Length says": (
            b"POST /v1/predict",
            {"Content-Type": "application/json", "Content-Length": "3"},
            b'{"inputs": []}',
        ),
    }
    try:
        for case, (request_line, headers, body) in cases.items():
            probe(
                "request",
                case,
                "tests/serving/test_app.py, tests/serving/test_validation.py, tests/serving/test_cli.py",
            )(lambda r=request_line, h=headers, b=body: _raw(host, int(port), r, h, b))
        probe("request", "the server after all of them", "tests/serving/test_app.py")(
            lambda: (
                f"/health {local.health(deployment)['status']}; a good request: "
                f"{local.predict(deployment, good)[0].shape} outputs"
            )
        )
    finally:
        local.teardown(deployment)


def faults(work: Path) -> None:
    from green_deploy.search.runner import machine_worker
    from green_deploy.search.space import suggest_variant
    from green_deploy.search.study import SearchSettings, open_study, run_worker

    def second_worker() -> str:
        with machine_worker(work / "search" / "default"):
            return expect_error(lambda: machine_worker(work / "search" / "default").__enter__())

    probe("fault", "a second search worker of one study on one machine", "tests/search/test_distributed.py")(
        second_worker
    )

    def resumed() -> str:
        settings = SearchSettings.parse({"storage": f"sqlite:///{work}/optuna.db", "n_startup_trials": 20})
        draws = []
        for n_trials in (3, 6):  # a worker stopped after 3 trials, then a new process resumes
            study = open_study(settings, "m")
            run_worker(
                study, lambda t: [len(suggest_variant(t, settings.space).steps), 0.0], n_trials, poll_s=0.01
            )
            draws = [tuple(sorted(t.params.items())) for t in study.trials]
        return f"{len(draws)} trials, {len(set(draws))} distinct configurations (a resumed worker continues its sequence)"

    probe("fault", "a search resumed after its worker was killed", "tests/search/test_study.py")(resumed)
    probe("fault", "a study killed with SIGKILL while its server runs", "tests/deploy/test_local.py")(
        lambda: _killed_study(work)
    )
    probe("fault", "kedro run ending on a green-deploy error", "tests/pipelines/evaluate/test_pipeline.py")(
        lambda: _kedro_error(work)
    )


def _changed_after_optimize(tiny: Path, work: Path) -> str:
    from green_deploy.evaluate.runner import check_artifact_files
    from green_deploy.zoo.artifacts import file_sha256

    folder = work / "changed" / "tiny_vit" / "pt_prune50"
    shutil.copytree(tiny, folder)
    recorded = json.dumps({"model.safetensors": file_sha256(folder / "model.safetensors")})
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:500])
    row = {
        "model_id": "tiny_vit",
        "variant_id": "pt_prune50",
        "technique": "magnitude_pruning",
        "artifact_dir": str(folder),
        "artifact_sha256": recorded,
    }
    return expect_error(lambda: check_artifact_files(row))


def _changed_dataset(work: Path) -> str:
    from green_deploy.zoo.data import freeze_manifest, load_dataset
    from green_deploy.zoo.data.manifest import read_manifest

    manifests = work / "manifests"
    manifest = read_manifest("fortunes")
    manifests.mkdir()
    path = freeze_manifest("fortunes", {}, manifests)
    data = json.loads(path.read_text())
    data["files"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    del manifest
    return expect_error(lambda: load_dataset("fortunes", {}, manifests))


def _killed_study(work: Path) -> str:
    from green_deploy.deploy.processes import process_alive

    tiny = _tiny_vit_variant(work)
    script = (
        "import sys, time\nfrom pathlib import Path\nfrom green_deploy.deploy import Variant\n"
        "from green_deploy.deploy.local import LocalDeployer, LocalSettings\nfrom green_deploy.serving.model import InputSpec\n"
        "v = Variant.from_folder(Path(sys.argv[1]), InputSpec('float32', (1, 28, 28)))\n"
        "d = LocalDeployer(LocalSettings(gpu_energy=False), Path(sys.argv[2]), tied=True).deploy(v)\n"
        "print(d.resources['pid'], flush=True)\ntime.sleep(600)\n"
    )
    study = subprocess.Popen(
        [sys.executable, "-c", script, str(tiny), str(work / "killed")], stdout=subprocess.PIPE, text=True
    )
    pid = int(study.stdout.readline())
    study.send_signal(signal.SIGKILL)
    study.wait()
    deadline = time.monotonic() + 15
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return (
        "its server ended with it (SIGTERM from the kernel)"
        if not process_alive(pid)
        else "ITS SERVER KEPT RUNNING"
    )


def _kedro_error(work: Path) -> str:
    project = work / "project"
    project.mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, project / name)
    shutil.copytree(PROJECT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    shutil.copytree(
        PROJECT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    (project / "conf" / "local").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipeline=optimize",
            "--namespaces=ngram_codelang",
            "--params",
            "optimize.onlyy=pt_fp16",
        ],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    tail = [line for line in result.stderr.strip().splitlines() if line.strip()][-2:]
    return f"exit code {result.returncode}; its last lines: " + " / ".join(tail)


def _raw(host: str, port: int, request_line: bytes, headers: dict[str, str], body: bytes | None) -> str:
    lines = [request_line + b" HTTP/1.1", b"Host: x", b"Connection: close"]
    if body is not None and "Content-Length" not in headers:
        headers = {**headers, "Content-Length": str(len(body))}
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    with socket.create_connection((host, port), timeout=30) as connection:
        connection.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0].decode()
    kind = next(
        (
            h.split(b":", 1)[1].strip().decode()
            for h in head.split(b"\r\n")
            if h.lower().startswith(b"content-type")
        ),
        "?",
    )
    return f"{status} ({kind}): {payload.decode(errors='replace')[:300]}"


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _tiny_vit_variant(work: Path) -> Path:
    folder = work / "variants" / "tiny_vit" / "pt_prune50"
    if folder.is_dir():
        return folder
    from green_deploy.optimize.artifacts import save_variant
    from green_deploy.optimize.base import OptimizationContext
    from green_deploy.optimize.spec import parse_variant
    from green_deploy.optimize.techniques import get_technique
    from green_deploy.zoo.families import get_family

    arch = {"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 32, "patch_size": 7}
    family = get_family("vit")
    batch = family.encode((np.random.default_rng(0).random((4, 28, 28)) * 255).astype(np.uint8), arch)
    context = OptimizationContext("tiny_vit", "vit", "classification", arch, 10, batch, batch, np.arange(4))
    spec = parse_variant(
        "pt_prune50", {"framework": "torch", "technique": "magnitude_pruning", "settings": {"amount": 0.5}}
    )
    optimized = get_technique("magnitude_pruning").apply(
        family.build_torch(arch, 10).eval(), spec.steps[0].settings, context
    )
    save_variant(optimized, spec, {"family": "vit", "architecture": arch, "n_outputs": 10}, folder)
    return folder


def _onnx_bytes() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 20])],
        [numpy_helper.from_array(np.ones((20, 20), np.float32), "w")],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9
    ).SerializeToString()


def _tflite_bytes() -> bytes:
    import tensorflow as tf
    import tf_keras

    inputs = tf_keras.Input((20,))
    return tf.lite.TFLiteConverter.from_keras_model(
        tf_keras.Model(inputs, tf_keras.layers.Dense(20)(inputs))
    ).convert()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        configuration()
        artifacts(work)
        requests(work)
        faults(work)
    table = pd.DataFrame(ROWS)
    lines = [
        "# Bad input, corrupt artifacts, malformed requests and faults: what a user sees",
        "",
        "Written by `python bench/reliability.py`, which makes each case happen through the same code the tests do "
        "(configuration parsers and nodes, artifact loaders, a real server on loopback reached over a raw socket, "
        f"real processes killed with SIGKILL). {len(table)} cases; the *test* column names where the suite asserts it.",
        "",
        markdown_table(table),
        "",
    ]
    OUTPUT.write_text("\n".join(lines))
    print(OUTPUT.read_text())  # noqa: T201  (a benchmark prints what it found)


if __name__ == "__main__":
    main()
