"""The allow-list and X-Forwarded-For handling: pure table tests, then through the server."""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

import pytest
from tornado.testing import gen_test

from deployhook.errors import ConfigError
from deployhook.network import allowed, client_address, parse_networks, sender_key
from deployhook.settings import Config
from tests.apptest import HookTestCase
from tests.helpers import push_payload, signed

PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8"], "trusted_proxies")
# GitHub's hook ranges, from the "hooks" key of https://api.github.com/meta (REFERENCE.md).
GITHUB = parse_networks(["192.30.252.0/22", "185.199.108.0/22", "140.82.112.0/20",
                         "143.55.64.0/20", "2a0a:a440::/29", "2606:50c0::/32"],
                        "allowed_networks")


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("140.82.115.1", None, "140.82.115.1"),                      # direct, no proxy
    ("140.82.115.1", "6.6.6.6", "140.82.115.1"),                 # untrusted peer: header ignored
    ("127.0.0.1", "140.82.115.1", "140.82.115.1"),               # one trusted proxy
    ("127.0.0.1", "6.6.6.6, 140.82.115.1", "140.82.115.1"),      # client-supplied left part
    ("127.0.0.1", "140.82.115.1, 10.1.1.1", "140.82.115.1"),     # two trusted hops
    ("127.0.0.1", "10.1.1.1", "10.1.1.1"),                       # all trusted: left-most
    ("127.0.0.1", "", "127.0.0.1"),
    ("127.0.0.1", "not-an-ip", None),                            # garbled: no guess
    ("127.0.0.1", "[2606:50c0::1]:443", "2606:50c0::1"),
    ("::ffff:127.0.0.1", "140.82.115.1:5555", "140.82.115.1"),   # v4-mapped proxy
])
def test_client_address(peer: str, forwarded: str | None, expected: str | None) -> None:
    result = client_address(peer, forwarded, PROXIES)
    assert result == (ipaddress.ip_address(expected) if expected else None)


@pytest.mark.parametrize(("address", "networks", "expected"), [
    ("140.82.115.1", GITHUB, True),
    ("2606:50c0::1", GITHUB, True),
    ("6.6.6.6", GITHUB, False),
    ("::ffff:140.82.115.1", GITHUB, True),
    (None, GITHUB, False),
    ("6.6.6.6", (), True),  # no allow-list: everyone (the signature still decides)
])
def test_allowed(address: str | None, networks: Any, expected: bool) -> None:
    ip = ipaddress.ip_address(address) if address else None
    assert allowed(ip, networks) is expected


@pytest.mark.parametrize(("address", "expected"), [
    ("203.0.113.7", "203.0.113.7"),                              # IPv4: the address
    (ipaddress.ip_address("203.0.113.7"), "203.0.113.7"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),                    # IPv6: its /64
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),   # the same /64
    (ipaddress.ip_address("2001:db8:1:2:abcd::9"), "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),                    # the next /64: another
    ("::ffff:203.0.113.7", "203.0.113.7"),                       # v4-mapped: the IPv4
    ("fe80::1%eth0", "fe80::/64"),                               # scoped
    ("::1", "::/64"),
    ("unknown", "unknown"), ("", "unknown"), (None, "unknown"), ("not-an-ip", "unknown"),
])
def test_a_sender_is_keyed_by_its_address_or_ipv6_slash_64(
        address: str | ipaddress.IPv4Address | ipaddress.IPv6Address | None,
        expected: str) -> None:
    """Second review, finding 10a: one key per IPv4 address and per IPv6 /64 (one host
    holds a whole /64), for every count and throttle of senders."""
    assert sender_key(address) == expected


def test_bad_cidr_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"allowed_networks: '10\.0\.0\.0/33'"):
        Config(allowed_networks=("10.0.0.0/33",))


class AllowListTest(HookTestCase):
    """Only GitHub's ranges, behind a proxy on this machine."""

    settings: ClassVar[dict[str, Any]] = {
        "allowed_networks": ("140.82.112.0/20",), "trusted_proxies": ("127.0.0.1",)}

    @gen_test(timeout=30)
    async def test_outside_the_list_is_403_before_anything_else(self) -> None:
        body, headers = signed(push_payload(self.repos.commit()))
        status, answer = await self.send(body, headers)
        assert status == 403
        assert answer["reason"] == "address 127.0.0.1 is not in allowed_networks"
        headers["X-Forwarded-For"] = "140.82.115.9, 6.6.6.6"
        status, answer = await self.send(body, headers)
        assert status == 403 and "6.6.6.6" in answer["reason"]
        assert self.repos.fetches() == 0

    @gen_test(timeout=30)
    async def test_forwarded_from_github_deploys(self) -> None:
        sha = self.repos.commit()
        body, headers = signed(push_payload(sha))
        headers["X-Forwarded-For"] = "6.6.6.6, 140.82.115.9"
        status, answer = await self.send(body, headers)
        assert status == 200 and answer["head"] == sha
