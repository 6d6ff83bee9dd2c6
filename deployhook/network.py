"""Who is calling: the client address behind trusted proxies, and the allow-list.

Pure functions.  ``X-Forwarded-For`` is believed only when the direct peer is
a trusted proxy; then the client is the right-most address in the header that
is not itself a trusted proxy (the left part is whatever the client claimed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Sequence[str], key: str) -> tuple[Network, ...]:
    """CIDRs (or single addresses) to networks.

    Raises:
        ValueError: a value is not an address or CIDR; the message names ``key``.
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{key}: {value!r} is not an IP address or CIDR") from None
    return tuple(networks)


def client_address(peer: str, forwarded_for: str | None,
                   trusted: Sequence[Network]) -> Address | None:
    """The client's address, or None when it cannot be parsed."""
    address = _address(peer)
    if address is None or not forwarded_for or not _within(address, trusted):
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        hop_address = _address(hop)
        if hop_address is None:
            return None  # a garbled header from a trusted proxy: refuse to guess
        if not _within(hop_address, trusted):
            return hop_address
        address = hop_address
    return address  # every hop is a trusted proxy: the left-most one


def allowed(address: Address | None, networks: Sequence[Network]) -> bool:
    """True when no allow-list is set, or ``address`` is inside one of ``networks``."""
    if not networks:
        return True
    return address is not None and _within(address, networks)


def sender_key(address: Address | str | None) -> str:
    """The key a sender is counted and throttled by: an IPv4 address itself (also when
    written IPv4-mapped, ``::ffff:203.0.113.7``), an IPv6 address its /64
    (``2001:db8:1:2::/64``: one host holds a whole /64, so a key per address would
    give it 2^64 fresh counters), ``"unknown"`` for None or what is not an address."""
    if isinstance(address, str):
        address = _address(address)
    if address is None:
        return "unknown"
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return str(mapped)
    if address.version == 6:
        return str(ipaddress.ip_network((address, 64), strict=False))
    return str(address)


def _within(address: Address, networks: Sequence[Network]) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    candidates = [address] + ([mapped] if mapped is not None else [])
    return any(a in net for a in candidates for net in networks if a.version == net.version)


def _address(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1:value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None
