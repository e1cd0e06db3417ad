"""Load benchmark of one local deployment; writes bench/results/serving.md (and .json).

Usage (after `kedro run --pipeline=optimize`):

    python bench/serving_load.py --model resnet_fmnist --variant torch_baseline \\
        --requests 10000 --concurrency 32 --rounds 3

Every configuration is a fresh server process on loopback, driven by an aiohttp client in this
process that keeps ``--concurrency`` requests in flight until ``--requests`` have been answered;
one request is one validation example. Configurations, interleaved round by round so that drift
of the machine falls on all of them alike:

- ``metered``: ``python -m green_deploy.serving`` as the deploy pipeline starts it (energy on);
- ``unmetered``: the same with ``--no-energy`` (no source opened, no energy window);
- ``metered-npy``: the metered server with ``application/x-npy`` bodies instead of JSON;
- ``mlflow``: ``mlflow models serve --env-manager local`` (uvicorn + FastAPI as well, one
  worker) on the same PyTorch module saved with ``mlflow.pytorch``, with JSON ``{"inputs"}``.

Latency is the client's (send to last byte). Metering overhead = median latency metered /
unmetered - 1, per round and over all requests; the server-side cost of one energy window is
measured separately with the same monitor in a tight loop.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd

from green_deploy.deploy.runner import in_process_outputs

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "bench/results"
CONFIGURATIONS = ("metered", "unmetered", "metered-npy", "mlflow")


@dataclass
class LoadResult:
    configuration: str
    round: int
    requests: int
    concurrency: int
    errors: int
    duration_s: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    server_energy_j: float | None  # sum of the energy the responses reported (None: no source)
    energy_source: str | None


def _conf_parameters() -> dict:
    from kedro.config import OmegaConfigLoader

    return OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="local")["parameters"]


def _variant(model_id: str, variant_id: str, n_examples: int):
    from green_deploy.deploy.runner import validation_examples, variant_of
    from green_deploy.zoo.spec import dataset_settings, select_entry

    zoo = _conf_parameters()["zoo"]
    table = pd.read_parquet(PROJECT / "data/07_model_output/variants.parquet")
    rows = table[(table.model_id == model_id) & (table.variant_id == variant_id)]
    if rows.empty:
        raise SystemExit(f"{model_id}/{variant_id} is not in the variants table; run the optimize pipeline")
    entry = select_entry(zoo["models"], model_id)
    examples = validation_examples(entry, dataset_settings(zoo.get("datasets") or {}, entry), n_examples)
    return variant_of(rows.iloc[0].to_dict(), examples), examples


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _bodies(examples: np.ndarray, kind: str) -> tuple[list[bytes], str]:
    if kind == "npy":
        return [_npy(x[None]) for x in examples], "application/x-npy"
    return [json.dumps({"inputs": x[None].tolist()}).encode() for x in examples], "application/json"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess, stopped with SIGTERM (then SIGKILL) on exit."""

    def __init__(self, command: list[str], ready_url: str | None, ready_file: Path | None, log: Path):
        self.log = log.open("w")
        # `mlflow models serve` runs `uvicorn` from PATH: this interpreter's scripts first
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PATH": path},
        )
        self.url = self._wait(ready_url, ready_file)

    def _wait(self, ready_url: str | None, ready_file: Path | None, timeout_s: float = 180.0) -> str:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log.name}")
            if ready_file is not None and ready_file.is_file() and ready_file.stat().st_size:
                return json.loads(ready_file.read_text())["url"]
            if ready_url is not None:
                try:
                    with urllib.request.urlopen(f"{ready_url}/ping", timeout=1) as response:
                        if response.status == 200:
                            return ready_url
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout_s} s; see {self.log.name}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def green_deploy_server(variant, work: Path, metered: bool) -> Server:
    ready = work / f"ready-{time.monotonic_ns()}.json"
    spec = variant.input_spec
    command = [
        sys.executable,
        "-m",
        "green_deploy.serving",
        "--variant-dir",
        str(variant.folder),
        "--runtime",
        variant.runtime,
        "--name",
        variant.variant_id,
        "--input-shape",
        ",".join(map(str, spec.shape)),
        "--input-dtype",
        spec.dtype,
        "--port",
        "0",
        "--ready-file",
        str(ready),
        "--log-level",
        "warning",
        *([] if metered else ["--no-energy"]),
    ]
    return Server(command, None, ready, work / f"green_deploy_{'metered' if metered else 'unmetered'}.log")


def save_mlflow_model(variant, examples: np.ndarray, folder: Path) -> Path:
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    from green_deploy.serving.model import load_model_files

    module = load_model_files(variant.folder, variant.runtime).eval()
    with torch.inference_mode():
        outputs = module(torch.from_numpy(examples[:2])).numpy()
    path = folder / "mlflow_model"
    # MLflow 3's default format is pt2 (torch.export), traced on the input example: one item, as sent
    mlflow.pytorch.save_model(
        module, path, signature=infer_signature(examples[:1], outputs[:1]), input_example=examples[:1]
    )
    return path


def mlflow_server(model_path: Path, work: Path) -> Server:
    port = _free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "models",
        "serve",
        "-m",
        str(model_path),
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    return Server(command, f"http://127.0.0.1:{port}", None, work / "mlflow.log")


def check_answer(url: str, batch: np.ndarray, expected: np.ndarray, key: str) -> None:
    """Both servers must answer what the variant's files predict in process (same model, same outputs)."""
    import urllib.request

    request = urllib.request.Request(
        url, json.dumps({"inputs": batch.tolist()}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = np.asarray(json.loads(response.read())[key], dtype=expected.dtype)
    if not np.allclose(answer, expected, atol=1e-4, rtol=1e-4):
        raise SystemExit(f"{url} answered {answer.ravel()[:5]}, in process {expected.ravel()[:5]}")


async def drive(url: str, bodies: list[bytes], content_type: str, n_requests: int, concurrency: int) -> dict:
    """Keep ``concurrency`` requests in flight until ``n_requests`` were answered."""
    latencies_s: list[float] = []
    energies_j: list[float] = []
    sources: set[str] = set()
    errors: list[str] = []
    next_index = 0
    headers = {"Content-Type": content_type}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < n_requests:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    latencies_s.append(time.perf_counter() - started)
                    if response.status != 200:
                        errors.append(f"{response.status}: {payload[:200]!r}")
                    elif "X-Energy-Source" in response.headers:  # an .npy answer
                        if response.headers["X-Energy-Source"]:
                            energies_j.append(float(response.headers["X-Energy-Joules"]))
                            sources.update(response.headers["X-Energy-Source"].split("; "))
                    elif b'"energy"' in payload:
                        energy = json.loads(payload)["energy"]
                        if energy["components"]:
                            energies_j.append(energy["joules"])
                            sources.update(f"{c['component']}={c['source']}" for c in energy["components"])
            except aiohttp.ClientError as error:
                errors.append(f"{type(error).__name__}: {error}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        duration_s = time.perf_counter() - started
    return {
        "latencies_s": latencies_s,
        "errors": errors,
        "duration_s": duration_s,
        "energy_j": sum(energies_j) if energies_j else None,
        "sources": "; ".join(sorted(sources)) or None,
    }


def _summarise(name: str, round_: int, concurrency: int, run: dict) -> LoadResult:
    ms = np.asarray(run["latencies_s"]) * 1e3
    return LoadResult(
        configuration=name,
        round=round_,
        requests=len(ms),
        concurrency=concurrency,
        errors=len(run["errors"]),
        duration_s=run["duration_s"],
        throughput_rps=len(ms) / run["duration_s"],
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        p99_ms=float(np.percentile(ms, 99)),
        server_energy_j=run["energy_j"],
        energy_source=run["sources"],
    )


def window_cost_us(n_windows: int = 20000) -> dict[str, float]:
    """Median server-side cost of one empty energy window (begin + end) with the serving sources."""
    from green_deploy.energy import EnergyMonitor, discover_sources

    monitor = EnergyMonitor(discover_sources(gpu=True))
    try:
        samples = []
        for _ in range(n_windows):
            started = time.perf_counter()
            monitor.begin_window("w")
            monitor.end_window("w")
            samples.append(time.perf_counter() - started)
        return {
            "median_us": statistics.median(samples) * 1e6,
            "p99_us": float(np.percentile(samples, 99)) * 1e6,
            "sources": ", ".join(f"{s.name} ({s.component})" for s in monitor.sources),
        }
    finally:
        monitor.close()


def run(args: argparse.Namespace) -> tuple[list[LoadResult], dict[str, list[float]], dict]:
    variant, examples = _variant(args.model, args.variant, args.examples)
    results: list[LoadResult] = []
    latencies: dict[str, list[float]] = {name: [] for name in args.configurations}
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))  # kept: the servers' logs
    print(f"server logs in {work}")  # noqa: T201
    expected = in_process_outputs(variant, examples[:1])
    model_path = save_mlflow_model(variant, examples, work) if "mlflow" in args.configurations else None
    for round_ in range(args.rounds):
        order = list(args.configurations)
        if round_ % 2:
            order.reverse()
        for name in order:
            bodies, content_type = _bodies(examples, "npy" if name.endswith("-npy") else "json")
            if name == "mlflow":
                server, route, key = mlflow_server(model_path, work), "/invocations", "predictions"
            else:
                metered = name != "unmetered"
                server, route, key = green_deploy_server(variant, work, metered), "/v1/predict", "outputs"
            with server:
                url = server.url + route
                check_answer(url, examples[:1], expected, key)
                asyncio.run(drive(url, bodies, content_type, args.warmup, args.concurrency))
                outcome = asyncio.run(drive(url, bodies, content_type, args.requests, args.concurrency))
            result = _summarise(name, round_, args.concurrency, outcome)
            if outcome["errors"]:
                print(f"{name}: first errors: {outcome['errors'][:3]}")  # noqa: T201
            print(  # noqa: T201
                f"round {round_} {name:12s} {result.requests} requests, {result.errors} errors, "
                f"{result.throughput_rps:7.1f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms"
            )
            results.append(result)
            latencies[name].extend(outcome["latencies_s"])
    return results, latencies, {"model": args.model, "variant": args.variant, "runtime": variant.runtime}


def _ratio_line(latencies: dict[str, list[float]], results: list[LoadResult]) -> tuple[float, list[float]]:
    pooled = statistics.median(latencies["metered"]) / statistics.median(latencies["unmetered"]) - 1
    by_round = {}
    for r in results:
        by_round.setdefault(r.round, {})[r.configuration] = r.p50_ms
    per_round = [rounds["metered"] / rounds["unmetered"] - 1 for rounds in by_round.values()]
    return pooled, per_round


def write_report(args, results: list[LoadResult], latencies, subject: dict, window: dict) -> str:
    table = pd.DataFrame([asdict(r) for r in results])
    overall = (
        table.groupby("configuration", sort=False)
        .agg(
            requests=("requests", "sum"),
            errors=("errors", "sum"),
            throughput_rps=("throughput_rps", "median"),
        )
        .reindex(args.configurations)
    )
    pooled, per_round = _ratio_line(latencies, results)
    lines = [
        "# Serving under load: one local deployment, metered and not, against `mlflow models serve`",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} CPU cores (no GPU), Python "
        f"{platform.python_version()}; server and load client share the cores.",
        f"Command: `python bench/serving_load.py --model {args.model} --variant {args.variant} "
        f"--requests {args.requests} --concurrency {args.concurrency} --rounds {args.rounds}`.",
        "",
        f"Subject: `{subject['model']}/{subject['variant']}` ({subject['runtime']}), one validation example per "
        f"request, {args.concurrency} requests in flight (aiohttp), {args.warmup} warm-up requests per server "
        "not counted. Each configuration is a fresh server process per round; rounds alternate their order.",
        "",
        "## Per configuration (all rounds)",
        "",
        "| configuration | requests | errors | throughput (req/s, median of rounds) | p50 (ms) | p95 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in overall.iterrows():
        ms = np.asarray(latencies[name]) * 1e3
        lines.append(
            f"| {name} | {int(row.requests):,} | {int(row.errors)} | {row.throughput_rps:,.0f} | "
            f"{np.percentile(ms, 50):.2f} | {np.percentile(ms, 95):.2f} | {np.percentile(ms, 99):.2f} |"
        )
    lines += [
        "",
        "## Per round",
        "",
        "| round | configuration | requests | errors | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | server energy (J, sum) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        energy = "n/a" if r.server_energy_j is None else f"{r.server_energy_j:.1f}"
        lines.append(
            f"| {r.round} | {r.configuration} | {r.requests:,} | {r.errors} | {r.throughput_rps:,.0f} | "
            f"{r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.p99_ms:.2f} | {energy} |"
        )
    sources = sorted({r.energy_source for r in results if r.energy_source})
    lines += [
        "",
        "## Metering overhead",
        "",
        f"- Median latency, metered / unmetered - 1, over all requests: **{pooled:+.1%}**; per round: "
        + ", ".join(f"{v:+.1%}" for v in per_round)
        + ".",
        f"- One energy window (begin + end) with the serving sources ({window['sources']}) costs "
        f"{window['median_us']:.1f} µs median, {window['p99_us']:.1f} µs p99, measured in a tight loop.",
        f"- Energy source the responses reported: {', '.join(sources) or 'none'}. On this machine CPU and RAM "
        "energy are **estimates** (no RAPL counters, no GPU), flagged `measured: false` in every response.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="resnet_fmnist")
    parser.add_argument("--variant", default="torch_baseline")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument(
        "--examples", type=int, default=256, help="distinct validation examples cycled through"
    )
    parser.add_argument("--configurations", nargs="+", choices=CONFIGURATIONS, default=list(CONFIGURATIONS))
    parser.add_argument("--output", type=Path, default=RESULTS / "serving.md")
    args = parser.parse_args()
    results, latencies, subject = run(args)
    window = window_cost_us()
    report = write_report(args, results, latencies, subject, window)
    args.output.write_text(report)
    args.output.with_suffix(".json").write_text(
        json.dumps(
            {"subject": subject, "window_cost": window, "runs": [asdict(r) for r in results]}, indent=1
        )
    )
    print(report)  # noqa: T201  (a benchmark prints its numbers)


if __name__ == "__main__":
    main()
