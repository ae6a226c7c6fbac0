"""The shipped model artifacts: ONNX scorers, their parameters and the tokenizer.

This package holds data, not code: it exists so the artifacts install with the
wheel and are found with ``importlib.resources.files("models")`` wherever the
project is installed. The build scripts beside them (``*/build.py``) are run from
a checkout and are not part of the installed package.
"""
