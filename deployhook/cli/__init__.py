"""The ``deployhook`` command and its subcommands.

Tornado's log module imports ``curses`` only to colour its own formatter, which the
command never uses (:mod:`deployhook.daemon.logs` formats every line itself).  Marking
it unavailable before Tornado loads keeps the curses libraries (about 0.6 MB of resident
memory, for the daemon's whole life) out of the process; an application embedding
deployhook does not import this package and is left as it is.
"""

import sys

sys.modules.setdefault("curses", None)  # type: ignore[arg-type]
