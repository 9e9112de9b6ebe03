"""Which addresses a callback may reach: public unicast only, also when IPv6 carries an IPv4 address."""

from __future__ import annotations

import ipaddress

import pytest

from channels_app.destinations import address_is_public


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "224.0.0.251", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1", "2002:a00:1::1", "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
    ],
)
def test_it_refuses_addresses_that_are_not_public(address):
    assert not address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"])
def test_it_accepts_public_unicast_addresses(address):
    assert address_is_public(ipaddress.ip_address(address))
