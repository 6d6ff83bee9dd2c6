"""deployhook: keep a server's git checkout in step with GitHub pushes."""

from .app import make_app
from .hook import DeployHook
from .settings import Config, load

__version__ = "0.1.0"
__all__ = ["Config", "DeployHook", "__version__", "load", "make_app"]
