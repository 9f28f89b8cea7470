# HAND-WRITTEN stub of the pycuda surface this project uses (pycuda ships no type information). Used only by
# tests/unit/tensorrt/test_api_conformance.py; signatures follow https://documen.tician.de/pycuda/driver.html.
