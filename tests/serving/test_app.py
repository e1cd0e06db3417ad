"""The scoring application on a real uvicorn server on loopback, with a tiny zoo ViT."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from green_deploy.energy import EnergyMonitor
from green_deploy.energy.sources.estimate import CpuTimeEstimate
from green_deploy.serving import InputSpec, ServedModel, ServingLimits, create_app, predictor
from green_deploy.zoo.inference import predict_torch
from tests.serving.helpers import Client, ConstantPowerMeter, metric_samples, running, tiny_vit

MAX_ITEMS = 16
MAX_BODY_BYTES = 64 * 1024  # 16 images of float32 (1, 28, 28) as JSON fit; 20 as .npy do not
FAILING_VALUE = 0.123  # the model "crashes" on a batch holding this pixel value
NAN_VALUE = 0.234  # ... returns a NaN
COMPLEX_VALUE = 0.345  # ... returns complex numbers


@pytest.fixture(scope="module")
def vit():
    return tiny_vit(n_items=8)


def _app(model, x, *, meters=None, limits=None, fail_on=None, close_monitor=True):
    predict = predictor("pytorch", model)
    if fail_on is not None:

        def predict(batch, _inner=predict):
            if (batch == fail_on).any():
                raise RuntimeError("kernel exploded")
            outputs = _inner(batch)
            if (batch == NAN_VALUE).any():
                outputs[0, 0] = np.nan
            if (batch == COMPLEX_VALUE).any():
                return outputs.astype(np.complex64)  # not JSON-serialisable: an unforeseen failure
            return outputs

    monitor = EnergyMonitor(meters if meters is not None else [ConstantPowerMeter(), CpuTimeEstimate()])
    served = ServedModel("tiny_vit", "pytorch", predict, InputSpec.from_example(x))
    limits = limits or ServingLimits(max_items=MAX_ITEMS, max_body_bytes=MAX_BODY_BYTES)
    return create_app(served, monitor, limits, close_monitor=close_monitor)


@pytest.fixture(scope="module")
def server(vit):
    model, x = vit
    with running(_app(model, x, fail_on=FAILING_VALUE)) as url:
        yield Client(url)


def _check_energy(energy, n_items):
    assert energy["joules"] > 0
    assert energy["joules_per_item"] == pytest.approx(energy["joules"] / n_items)
    by_component = {c["component"]: c for c in energy["components"]}
    assert set(by_component) == {"gpu", "cpu"}
    assert by_component["gpu"]["source"].startswith("fake_constant_power")
    assert by_component["gpu"]["measured"] is True
    assert by_component["cpu"]["source"].startswith("cpu_time_tdp_estimate")
    assert by_component["cpu"]["measured"] is False
    assert energy["measured"] is False  # one component is an estimate, so the whole is
    assert sum(c["energy_j"] for c in energy["components"]) == pytest.approx(energy["joules"])
    assert energy["window"]["items"] == n_items and energy["window"]["requests"] == 1


def test_json_prediction_equals_in_process_and_carries_its_energy(server, vit):
    model, x = vit
    reply = server.predict_json(x[:3])
    assert reply.status == 200, reply.body
    body = reply.json()
    np.testing.assert_allclose(np.array(body["outputs"]), predict_torch(model, x[:3]), rtol=1e-5, atol=1e-6)
    assert body["model"] == "tiny_vit" and body["runtime"] == "pytorch"
    assert 0 < body["energy"]["window"]["duration_s"] <= body["latency_s"]
    _check_energy(body["energy"], 3)


def test_npy_prediction_equals_in_process_with_energy_in_headers(server, vit):
    model, x = vit
    reply = server.predict_npy(x[2:6])
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/x-npy"
    outputs = reply.array()
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, predict_torch(model, x[2:6]), rtol=1e-5, atol=1e-6)
    assert float(reply.headers["x-energy-joules"]) > 0
    assert float(reply.headers["x-energy-joules-per-item"]) == pytest.approx(
        float(reply.headers["x-energy-joules"]) / 4
    )
    assert reply.headers["x-energy-measured"] == "false"
    assert reply.headers["x-energy-active-joules"] == ""  # no idle baseline measured
    assert 0 < float(reply.headers["x-energy-window-seconds"]) <= float(reply.headers["x-latency-seconds"])
    assert "gpu=fake_constant_power(100 W)" in reply.headers["x-energy-source"]
    assert "cpu=cpu_time_tdp_estimate" in reply.headers["x-energy-source"]
    components = json.loads(reply.headers["x-energy-components"])
    assert {c["component"]: c["measured"] for c in components} == {"gpu": True, "cpu": False}
    assert float(reply.headers["x-latency-seconds"]) > 0


def test_the_answer_format_follows_accept(server, vit):
    _, x = vit
    as_json = server.predict_npy(x[:1], accept="application/json")
    assert as_json.headers["content-type"] == "application/json"
    _check_energy(as_json.json()["energy"], 1)
    body = json.dumps({"inputs": x[:1].tolist()})
    as_npy = server.request(
        "POST", "/v1/predict", body, {"Content-Type": "application/json", "Accept": "application/x-npy"}
    )
    np.testing.assert_allclose(as_npy.array(), np.array(as_json.json()["outputs"]), rtol=1e-6)


def test_the_named_route_serves_the_model(server, vit):
    model, x = vit
    reply = server.predict_json(x[:1], path="/v1/models/tiny_vit/predict")
    assert reply.status == 200
    np.testing.assert_allclose(
        np.array(reply.json()["outputs"]), predict_torch(model, x[:1]), rtol=1e-5, atol=1e-6
    )


def test_health_names_the_model_and_its_input(server):
    reply = server.get("/health")
    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "ok"
    assert (body["model"], body["runtime"]) == ("tiny_vit", "pytorch")
    assert body["input"] == {"dtype": "float32", "shape": [1, 28, 28]}
    assert body["limits"]["max_items"] == MAX_ITEMS
    assert {s["component"]: s["measured"] for s in body["energy_sources"]} == {"gpu": True, "cpu": False}


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _bad_requests(x):
    json_type, npy_type = {"Content-Type": "application/json"}, {"Content-Type": "application/x-npy"}
    nan_image = x[:1].copy()
    nan_image[0, 0, 0, 0] = np.nan
    too_big = json.dumps({"inputs": np.zeros((20, 1, 28, 28)).tolist()}).encode() + b" " * MAX_BODY_BYTES
    return {
        "wrong dtype (.npy float64)": (("POST", "/v1/predict", _npy(x[:2].astype(np.float64)), npy_type), 422, "wrong_dtype"),
        "wrong dtype (JSON strings)": (
            ("POST", "/v1/predict", json.dumps({"inputs": np.full((1, 1, 28, 28), "x").tolist()}), json_type), 422, "wrong_dtype"
        ),
        "wrong shape (no channel axis)": (("POST", "/v1/predict", json.dumps({"inputs": x[:2, 0].tolist()}), json_type), 422, "wrong_shape"),
        "wrong shape (.npy one image, no batch axis)": (("POST", "/v1/predict", _npy(x[0]), npy_type), 422, "wrong_shape"),
        "ragged items": (("POST", "/v1/predict", json.dumps({"inputs": [x[0].tolist(), [[0.0]]]}), json_type), 422, "wrong_shape"),
        "too many items": (("POST", "/v1/predict", _npy(np.zeros((MAX_ITEMS + 1, 1, 28, 28), np.float32)), npy_type), 422, "too_many_items"),
        "no items": (("POST", "/v1/predict", json.dumps({"inputs": []}), json_type), 422, "empty_batch"),
        "payload too big": (("POST", "/v1/predict", too_big, json_type), 413, "payload_too_large"),
        "malformed JSON": (("POST", "/v1/predict", b'{"inputs": [[1, 2', json_type), 400, "malformed_json"),
        "JSON without inputs": (("POST", "/v1/predict", json.dumps({"instances": [1]}), json_type), 400, "malformed_json"),
        "NaN in JSON": (("POST", "/v1/predict", json.dumps({"inputs": nan_image.tolist()}), json_type), 422, "non_finite"),
        "overflowing number in JSON": (
            ("POST", "/v1/predict", json.dumps({"inputs": x[:1].tolist()}).replace("0.", "1e400", 1), json_type), 422, "non_finite"
        ),
        "NaN in .npy": (("POST", "/v1/predict", _npy(nan_image), npy_type), 422, "non_finite"),
        "not an .npy": (("POST", "/v1/predict", b"\x93NUMPY garbage", npy_type), 400, "malformed_npy"),
        "pickled .npy": (("POST", "/v1/predict", _npy(np.array([{"a": 1}], dtype=object)), npy_type), 400, "malformed_npy"),
        "unsupported media type": (("POST", "/v1/predict", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type"),
        "unknown route": (("GET", "/v2/everything", None, {}), 404, "not_found"),
        "wrong method": (("GET", "/v1/predict", None, {}), 405, "method_not_allowed"),
        "unknown model": (("POST", "/v1/models/resnet/predict", json.dumps({"inputs": x[:1].tolist()}), json_type), 404, "unknown_model"),
    }  # fmt: skip


BAD_REQUEST_NAMES = sorted(_bad_requests(np.zeros((2, 1, 28, 28), np.float32)))


@pytest.mark.parametrize("case", BAD_REQUEST_NAMES)
def test_a_bad_request_is_refused_with_a_clear_message_and_the_server_keeps_serving(server, vit, case):
    model, x = vit
    (method, path, body, headers), status, code = _bad_requests(x)[case]
    reply = server.request(method, path, body, headers)
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10
    good = server.predict_json(x[:1])
    assert good.status == 200
    np.testing.assert_allclose(
        np.array(good.json()["outputs"]), predict_torch(model, x[:1]), rtol=1e-5, atol=1e-6
    )


def test_an_oversized_body_without_content_length_is_refused_while_read(server, vit):
    _, x = vit
    chunk = b" " * 8192
    chunks = [b'{"inputs": ', *[chunk] * (MAX_BODY_BYTES // len(chunk) + 2), b"[]}"]
    reply = server.request(
        "POST", "/v1/predict", iter(chunks), {"Content-Type": "application/json"}, encode_chunked=True
    )
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "payload_too_large"
    assert server.predict_json(x[:1]).status == 200


def test_a_failing_model_call_is_a_500_and_the_server_keeps_serving(server, vit):
    _, x = vit
    poisoned = x[:2].copy()
    poisoned[1, 0, 5, 5] = FAILING_VALUE
    reply = server.predict_npy(poisoned)
    assert reply.status == 500
    error = reply.json()["error"]
    assert error["code"] == "model_error"
    assert "kernel exploded" in error["message"]
    assert server.predict_npy(x[:2]).status == 200
    assert server.get("/health").json()["status"] == "ok"


def _with_pixel(x, value):
    batch = x[:2].copy()
    batch[1, 0, 3, 3] = value
    return batch


def test_nan_outputs_go_as_null_in_json_and_as_nan_in_npy(server, vit):
    _, x = vit
    body = server.predict_json(_with_pixel(x, NAN_VALUE)).json()
    assert body["outputs"][0][0] is None and body["outputs"][1][0] is not None
    assert body["warnings"] == ["1 output values were NaN or infinite and are sent as null"]
    assert np.isnan(server.predict_npy(_with_pixel(x, NAN_VALUE)).array()[0, 0])


def test_an_unforeseen_server_error_is_a_json_500_and_the_server_keeps_serving(server, vit):
    _, x = vit
    reply = server.predict_json(_with_pixel(x, COMPLEX_VALUE))
    assert reply.status == 500
    assert reply.json()["error"]["code"] == "internal_error"
    assert "complex" in reply.json()["error"]["message"]
    assert server.predict_json(x[:1]).status == 200


def test_without_energy_sources_the_energy_is_empty_not_invented(vit):
    model, x = vit
    with running(_app(model, x, meters=[])) as url:
        energy = Client(url).predict_json(x[:1]).json()["energy"]
    assert (energy["joules"], energy["components"], energy["measured"]) == (0, [], False)


def test_metrics_count_the_requests_sent_and_the_energy_reported(vit):
    model, x = vit
    with running(_app(model, x)) as url:
        client = Client(url)
        replies = [client.predict_json(x[:2]), client.predict_npy(x[:3], accept="application/json")]
        bad = [client.predict_json(x[:1, 0]), client.predict_json(x[:1, 0]), client.get("/nope")]
        assert [r.status for r in replies] == [200, 200] and [r.status for r in bad] == [422, 422, 404]
        samples = metric_samples(client.get("/metrics").body.decode())

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("green_deploy_http_requests_total", endpoint="predict", status="200") == 2
    assert value("green_deploy_http_requests_total", endpoint="predict", status="422") == 2
    assert value("green_deploy_http_requests_total", endpoint="other", status="404") == 1
    assert value("green_deploy_request_errors_total", code="wrong_shape") == 2
    assert value("green_deploy_request_errors_total", code="not_found") == 1
    assert value("green_deploy_http_request_duration_seconds_count", endpoint="predict") == 4
    assert value("green_deploy_predicted_items_total") == 5
    assert value("green_deploy_inference_duration_seconds_count") == 2
    assert value("green_deploy_model_info", model="tiny_vit", runtime="pytorch") == 1
    for component in ("gpu", "cpu"):
        reported = [
            c for r in replies for c in r.json()["energy"]["components"] if c["component"] == component
        ]
        source, measured = reported[0]["source"], str(reported[0]["measured"]).lower()
        total = value(
            "green_deploy_energy_joules_total", component=component, source=source, measured=measured
        )
        assert total == pytest.approx(sum(c["energy_j"] for c in reported), rel=1e-9)
        assert value("green_deploy_request_energy_joules_count", component=component, source=source) == 2
        assert value(
            "green_deploy_request_energy_joules_sum", component=component, source=source
        ) == pytest.approx(total)


@pytest.mark.parametrize("max_batch_items", [0, 64], ids=["one window per request", "micro-batching"])
def test_concurrent_requests_all_succeed_and_energy_is_not_counted_twice(vit, max_batch_items):
    """32 clients at once. With one inference worker the windows never overlap: the per-request
    energies add up to the metrics counter exactly, and to no more than the fake meter counted
    over the whole run (overlapping windows would count each other's time: up to 32x more)."""
    model, x = vit
    meter = ConstantPowerMeter(power_w=100.0)
    limits = ServingLimits(max_items=MAX_ITEMS, max_batch_items=max_batch_items)
    expected = predict_torch(model, x)
    with running(_app(model, x, meters=[meter], limits=limits)) as url:
        client = Client(url)

        def call(index):
            start = index % 7
            reply = client.predict_npy(x[start : start + 2], accept="application/json")
            return start, reply

        start_j = meter.read_j()
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(call, range(128)))
        span_j = meter.read_j() - start_j
        samples = metric_samples(client.get("/metrics").body.decode())
    assert [reply.status for _, reply in results] == [200] * 128
    for start, reply in results:  # each request got its own rows back, micro-batched or not
        np.testing.assert_allclose(
            np.array(reply.json()["outputs"]), expected[start : start + 2], rtol=1e-4, atol=1e-5
        )
    energies = [reply.json()["energy"] for _, reply in results]
    per_request_j = sum(e["joules"] for e in energies)
    counter_j = samples[
        (
            "green_deploy_energy_joules_total",
            (("component", "gpu"), ("measured", "true"), ("source", meter.name)),
        )
    ]
    assert counter_j == pytest.approx(per_request_j, rel=1e-9)
    assert 0 < per_request_j <= span_j * 1.001
    if max_batch_items == 0:
        assert all(e["window"]["requests"] == 1 for e in energies)
    assert all(e["window"]["items"] <= max(max_batch_items, 2) for e in energies)


def test_shutdown_stops_the_worker_and_closes_the_monitor(vit):
    model, x = vit
    meter = ConstantPowerMeter()
    app = _app(model, x, meters=[meter])
    with running(app) as url:
        assert Client(url).predict_json(x[:1]).status == 200
        assert not meter.closed
    assert meter.closed
    assert not app.state.worker.alive


def test_a_model_that_cannot_warm_up_fails_startup(vit):
    model, x = vit
    app = _app(model, np.full((1, 1, 28, 28), 0.0, np.float32), fail_on=0.0)
    with pytest.raises(RuntimeError, match="did not start"), running(app):
        pass
