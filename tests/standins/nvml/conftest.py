"""The NVML stand-in's fixtures for its own tests."""

from tests.standins.nvml.standin import nvml, nvml_lib

__all__ = ["nvml", "nvml_lib"]
