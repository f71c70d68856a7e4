"""Whether a client's address is in a list of networks (``security.trusted_proxies``,
``metrics.allow``): one rule for every battery that asks."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address

Network = IPv4Network | IPv6Network


def address_in(address: str, networks: Sequence[Network]) -> bool:
    """Whether the IP address ``address`` is in one of ``networks``; False for anything
    that is no IP address. A dual-stack socket shows an IPv4 peer as ``::ffff:a.b.c.d``:
    that counts as ``a.b.c.d``."""
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
