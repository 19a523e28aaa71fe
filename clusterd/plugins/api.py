"""The plugin API's version, and the check of the range a plugin says it supports."""

from __future__ import annotations

from clusterd.plugins.version import parse_range, parse_version

__all__ = ["API_VERSION", "api_problem"]

#: The version of what plugins use (see ``clusterd.plugins``): semantic, MAJOR.MINOR.PATCH.
API_VERSION = "1.0.0"


def api_problem(plugin: object) -> str | None:
    """Why ``plugin`` cannot be used with this API version (None: it can).

    A plugin states what it supports as ``CLUSTERD_API = ">=1,<2"`` (a module attribute,
    or a class attribute of a plugin object); one that states nothing is accepted.
    """
    stated = getattr(plugin, "CLUSTERD_API", None)
    if stated is None:
        return None
    try:
        supported = parse_range(stated)
    except ValueError as exc:
        return f"its CLUSTERD_API is not a version range: {exc}"
    if parse_version(API_VERSION) in supported:
        return None
    return (
        f"it supports the clusterd plugin API {supported} (CLUSTERD_API), this clusterd "
        f"has API {API_VERSION}; install a release of the plugin made for API "
        f"{API_VERSION.split('.')[0]}.x"
    )
