"""Sweeps of many targets on one event loop: the engine (`sweep()`, whose
public name is `asyncecho.sweep`), target parsing and record output.

(Named `sweeps`, not `sweep`: a subpackage `asyncecho.sweep` would take the
place of the `asyncecho.sweep()` function as soon as it was imported.)

May import: the public API (`asyncecho.client`, `results` ...), the
transport and the protocol; nothing of the CLI.
"""
