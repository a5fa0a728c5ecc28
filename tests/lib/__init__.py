"""Python helpers for Salvo integration tests (peers.py, procs.py)."""
