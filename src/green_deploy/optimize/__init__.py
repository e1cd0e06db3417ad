"""Optimization techniques (quantization, pruning, precision, conversion) for zoo models in
PyTorch and TensorFlow, each one small module; knows nothing of Kedro."""
