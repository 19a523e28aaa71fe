"""Results beyond the table: the self-contained HTML report (``clusterctl report``).

``data`` gathers and shapes what a report shows (stdlib only), ``importance`` holds
the parameter-importance estimator, ``plots`` draws the figures (matplotlib, the
``report`` extra) and ``html`` writes the file. Nothing is imported here: importing
``clusterd.report`` (or a sibling subpackage such as the converters) costs nothing.
"""

from __future__ import annotations

__all__: list[str] = []
