import logging
import os
import sys

from green_deploy.serving.cli import main

code = main()
# Everything is stopped and logged; skipping the interpreter's finalization (PyTorch's and
# TensorFlow's module teardown takes 0.4-0.9 s) makes a stop as fast as a start is slow.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
