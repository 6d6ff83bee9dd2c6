"""deployhook: keep a server's git checkout in step with GitHub pushes."""

from deployhook.embed import DeployHook
from deployhook.settings import Config, load
from deployhook.web.app import make_app

__version__ = "0.1.0"
__all__ = ["Config", "DeployHook", "__version__", "load", "make_app"]
