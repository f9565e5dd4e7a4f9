"""Snapshots of a whole sandbox: take, restore, and compare with now."""
