"""Sync use cases: feeds and their mappings, runs, reconciliation, quarantine, discrepancies, intake."""
