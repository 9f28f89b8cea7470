# HAND-WRITTEN stub of the pycuda surface this project uses (pycuda ships no type information). Used only by
# tests/unit/detector/runtime/tensorrt/test_api_conformance.py (next to it); signatures follow
# https://documen.tician.de/pycuda/driver.html.
