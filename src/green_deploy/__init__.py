"""green-deploy: energy, carbon, cost and accuracy of optimized and deployed ML models."""

import os

__version__ = "0.1.0"

# Set before any framework is imported; users may override each one in their environment.
# tfmot needs Keras 2 (tf-keras); the default zoo never reaches a model hub.
for _name, _value in {
    "TF_USE_LEGACY_KERAS": "1",
    "HF_HUB_OFFLINE": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "KEDRO_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_name, _value)
