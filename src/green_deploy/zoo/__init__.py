"""The model zoo: configured models, their data, training, and PyTorch/Keras twins.

Knows nothing of Kedro; the ``zoo`` pipeline wires it.
"""
