"""The sans-I/O core: PDU codec (PS3.8 9.3), the upper-layer state machine
(Table 9-10), DIMSE C-ECHO, negotiation and the SCP's decisions. Bytes and
events in, bytes and events out; times are passed in, never read.

May import: the standard library (nothing that does I/O or tells time) and
other modules of this package; of asyncecho, only the `_version` constant.
"""
