"""Side-by-side benchmarks of asyncecho (issue 7).

    python -m benchmarks --smoke | --quick | --full

Every scenario runs its competitors in the same run against the same server
process, so the figures that matter are the ratios: this machine is shared
and absolute times drift by ±15 % from run to run.

- `pdus`: the precomputed PDU bytes shared by the raw client and the minimal SCP.
- `raw_client`: the ceiling, an `asyncio.Protocol` client on precomputed bytes.
- `minimal_scp`: the load server, an `asyncio.Protocol` SCP on precomputed bytes.
- `scp_process`: the server processes (minimal SCP, a silent listener, asyncecho
  `serve()`); `servers` starts them (and DCMTK storescp), pins them to one CPU
  and reads their CPU time.
- `worker`: one measurement (one competitor, one scenario) in a fresh client process.
- `scenarios`: P1-P6 and their plans per mode; `report`: the table, the verdicts, the JSON.
- `procstat`: CPU time, RSS and pinning from /proc; `profiling`: cProfile of
  asyncecho's client, server and CLI start-up (`python -m benchmarks.profiling`).

Results and analysis: `benchmarks/RESULTS.md`.
"""
