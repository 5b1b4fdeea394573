"""Helpers for tests/test_vpn_openvpn.py: a network namespace made for the test, processes run
inside it (vip-sim, vip-bridge, an OpenVPN server with radiusplugin, an OpenVPN client), a small
EC certificate authority, and the configuration files of each peer."""
