"""``python -m deployhook``."""

import sys

from deployhook.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
