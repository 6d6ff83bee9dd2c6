"""deployhook: keep a server's git checkout in step with GitHub pushes.

``deployhook.DeployHook``, ``deployhook.Config``, ``deployhook.load`` and
``deployhook.make_app`` are imported on first use, so importing one pure module
(``deployhook.forges``, ``deployhook.web.bigparse``'s parsing child) does not load
Tornado and the whole daemon.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deployhook.version import __version__

if TYPE_CHECKING:
    from deployhook.embed import DeployHook
    from deployhook.settings import Config, load
    from deployhook.web.app import make_app

__all__ = ["Config", "DeployHook", "__version__", "load", "make_app"]
_WHERE = {"DeployHook": "deployhook.embed", "Config": "deployhook.settings",
          "load": "deployhook.settings", "make_app": "deployhook.web.app"}


def __getattr__(name: str) -> Any:
    """The public names, imported from their modules when first asked for.

    Raises:
        AttributeError: ``name`` is not one of them.
    """
    if name not in _WHERE:
        raise AttributeError(f"module 'deployhook' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
