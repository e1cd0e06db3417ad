"""What is served: the input spec, the predictor of each runtime, loading a saved variant."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from green_deploy.errors import ConfigError
from green_deploy.serving.model import InputSpec, load_model_files, load_served_model, predictor
from green_deploy.zoo.inference import predict_torch
from tests.serving.helpers import VIT_ARCH, save_tiny_variant, tiny_vit


def test_input_spec_from_an_example_batch_and_from_text():
    spec = InputSpec.from_example(np.zeros((5, 1, 28, 28), np.float32))
    assert spec == InputSpec("float32", (1, 28, 28)) == InputSpec.parse("float32", "1,28,28")
    assert spec.describe() == "float32 (N, 1, 28, 28)"
    assert spec.item_bytes == 28 * 28 * 4
    assert spec.zeros(2).shape == (2, 1, 28, 28) and spec.zeros(2).dtype == np.float32
    assert InputSpec(np.dtype("int64"), (128,)).to_dict() == {"dtype": "int64", "shape": [128]}


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: InputSpec("str", (3,)), ConfigError),
        (lambda: InputSpec("bool", (3,)), ConfigError),
        (lambda: InputSpec("flaot32", (3,)), TypeError),
        (lambda: InputSpec("float32", (0, 3)), ConfigError),
        (lambda: InputSpec.parse("float32", "1,two"), ConfigError),
        (lambda: InputSpec.from_example(np.zeros((0, 3))), ConfigError),
    ],
)
def test_input_spec_refuses_what_it_cannot_validate(make, error):
    with pytest.raises(error):
        make()


def test_importing_the_serving_core_loads_no_ml_framework_and_no_kedro():
    code = (
        "import sys, green_deploy.serving, green_deploy.serving.cli; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'tf_keras', 'onnxruntime', 'kedro', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_saved_pytorch_variant_is_loaded_and_served_as_saved(tmp_path):
    model, x = tiny_vit(4)
    variant_dir = save_tiny_variant(tmp_path, x, model)
    served = load_served_model(variant_dir, "pytorch", InputSpec.from_example(x))
    assert (served.name, served.runtime) == ("pt_fp16", "pytorch")
    expected = predict_torch(load_model_files(variant_dir, "pytorch"), x)
    np.testing.assert_array_equal(served.predict(x), expected)
    np.testing.assert_allclose(served.predict(x), predict_torch(model, x), atol=5e-3)  # fp16 of the baseline
    with pytest.raises(ConfigError, match="unknown runtime 'jax'"):
        load_served_model(variant_dir, "jax", InputSpec.from_example(x))


def test_a_zoo_models_torch_folder_is_served_as_the_torch_baseline(tmp_path):
    from green_deploy.zoo.artifacts import save_torch_model

    model, x = tiny_vit(4)
    folder = save_torch_model(model, "vit", VIT_ARCH, 10, tmp_path / "tiny_vit" / "torch")
    served = load_served_model(folder, "pytorch", InputSpec.from_example(x), "torch_baseline")
    assert served.name == "torch_baseline"
    np.testing.assert_array_equal(served.predict(x), predict_torch(model, x))


def test_the_onnx_predictor_runs_the_graph():
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(weights, "w")],
    )
    onnx_bytes = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9
    ).SerializeToString()
    predict = predictor("onnxruntime", onnx_bytes, num_threads=1)
    x = np.random.default_rng(0).random((5, 1, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(predict(x), x.reshape(5, 4) @ weights, rtol=1e-6)


def test_the_tflite_predictor_keeps_one_interpreter_and_matches_predict_tflite():
    import tensorflow as tf
    import tf_keras

    from green_deploy.runtimes.tflite import predict_tflite

    images = tf_keras.Input((4, 4, 1))
    keras_model = tf_keras.Model(images, tf_keras.layers.Dense(3)(tf_keras.layers.Flatten()(images)))
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    predict = predictor("tflite", flatbuffer)
    interpreter = predict._tflite
    x = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)  # NCHW, as the zoo stores images
    for n in (1, 4, 4, 2):  # the batch size changes: reallocated, same interpreter
        np.testing.assert_allclose(predict(x[:n]), predict_tflite(flatbuffer, x[:n]), rtol=1e-6)
    assert predict._tflite is interpreter
    np.testing.assert_allclose(predictor("keras", keras_model)(x), predict(x), rtol=1e-5, atol=1e-6)


def test_a_device_the_runtime_cannot_use_is_refused_before_loading():
    with pytest.raises(ConfigError, match="CPU only"):
        predictor("onnxruntime", b"not a model", device="cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        predictor("pytorch", object(), device="tpu")


def test_a_device_this_machine_lacks_is_refused_before_anything_starts():
    import torch

    from green_deploy.runtimes import available_devices
    from green_deploy.serving.model import check_devices_here

    assert "cpu" in available_devices()
    check_devices_here(["cpu"], "evaluate.devices")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(
        ConfigError, match=r"evaluate.devices names \['cuda'\], which this machine does not have"
    ):
        check_devices_here(["cpu", "cuda"], "evaluate.devices")
