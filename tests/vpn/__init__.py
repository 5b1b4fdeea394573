"""Helpers for the VPN end-to-end tests (real VPN servers in front of vip-bridge)."""
