"""The ``zoo`` pipeline: build every configured model in PyTorch and Keras, evaluate, log to MLflow."""
