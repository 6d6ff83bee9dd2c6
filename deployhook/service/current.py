"""The daemon-wide settings now: what a part reads per request when a reload (SIGHUP)
may have replaced the config since it was built."""

from __future__ import annotations

from deployhook.network import Network, parse_networks
from deployhook.settings import Config


class Current:
    """The daemon-wide settings in force, and the networks parsed from them.  A reload
    :meth:`set` s new ones in place, so every part holding this reads them at once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.allowed: tuple[Network, ...] = ()
        self.trusted: tuple[Network, ...] = ()
        self.set(config)

    def set(self, config: Config) -> None:
        """Put ``config`` in force (its networks were checked when it was loaded)."""
        self.config = config
        self.allowed = parse_networks(config.allowed_networks, "allowed_networks")
        self.trusted = parse_networks(config.trusted_proxies, "trusted_proxies")
