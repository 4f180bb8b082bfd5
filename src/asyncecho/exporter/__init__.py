"""A Prometheus exporter for DICOM C-ECHO, in blackbox_exporter's `/probe`
pattern (`asyncecho exporter`).

- `config`: the YAML config (modules) read and checked into frozen values;
- `probe`: a target parsed, one probe (one association through
  `asyncecho.verify`) and the metrics it answers with, its own alone;
- `tls_watch`: what the TLS handshake says that `EchoResult` does not (its
  time, the peer's certificate expiry);
- `app`: the aiohttp application (/probe, /metrics, /-/healthy, /-/reload).

Built on the public API (`asyncecho.verify`, `EchoResult`, `asyncecho.tls`)
at the level of `sweeps`: it imports nothing of the transport or the core,
and nothing of `sweeps` or `cli`. Needs the `exporter` extra
(`pip install "asyncecho[exporter]"`).
"""
