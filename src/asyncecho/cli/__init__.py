"""The command line: `asyncecho echoscu | echoscp | sweep | demo`, each
imported only when it is the command asked for (start-up time is part of a
CLI echo); the echoscu-style log lines and the `-d` PDU dumps.

May import: everything below it (sweeps, the API, transport, protocol).
"""
