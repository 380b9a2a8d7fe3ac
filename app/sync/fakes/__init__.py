"""Vendor-shaped fake servers: the demo's outside systems and the tests' real HTTP peers."""
