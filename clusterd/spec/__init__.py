"""sweep.toml: parse, validate and expand into trials (stdlib only).

Public entry points::

    load_sweep(path) -> SweepSpec           # read + validate a file; SpecError on any problem
    parse_sweep(text, source, base_dir) -> SweepSpec
    expand(spec) -> list[dict]              # the trials' params, in index order (deterministic)
    params_key(params) -> str               # canonical JSON used to match trials on --extend
"""

from clusterd.spec.expand import expand, params_key
from clusterd.spec.model import SweepSpec
from clusterd.spec.parse import load_sweep, parse_sweep

__all__ = ["SweepSpec", "expand", "load_sweep", "params_key", "parse_sweep"]
