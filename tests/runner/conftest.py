"""The NVML stand-in's fixtures (``nvml``, ``nvml_lib``) for the sampler tests."""

from tests.standins.nvml.standin import nvml, nvml_lib

__all__ = ["nvml", "nvml_lib"]
