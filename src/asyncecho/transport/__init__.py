"""Moving bytes and time for the core: asyncio transports (also uvloop),
anyio byte streams (trio), TLS, and the asyncio timer wheel.

May import: asyncio, anyio, socket, ssl and `asyncecho.protocol`; nothing of
the API, sweep or CLI layers above it.
"""
