"""Scale-out engines: the CLI's batch commands on Ray Data (``--engine ray``).

Importing this package loads neither Ray nor torch; :mod:`safeguard.scale.ray_engine`
imports Ray when a run starts. The in-process engine stays the default.
"""

from __future__ import annotations

__all__: list[str] = []
