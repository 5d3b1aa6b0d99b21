"""pipefill.probe: record your own pipeline into a pipefill trace.

```python
from pipefill import probe
rec = probe.Recorder(policy={"name": "phase_pp", "d_in": 2, "d_out": 2})
s0, s1 = rec.stage("stage0"), rec.stage("stage1")
with s0.span("decode", chunk=k): ...
with s1.wait("q_in"): env = q_in.get()          # what the stage waits on (explain)
s0.mark("emit", chunk=k); s0.counter("q_in", depth); s0.send("q_in", chunk=k, nbytes=n)
rec.save("run.parquet")
```

Importing this package imports only the standard library: pandas and pyarrow load when
a trace is saved, torch when a span is timed on a CUDA stream.
"""

from pipefill.probe.dist import sync_clocks
from pipefill.probe.env import NullRecorder, ProbeEnvError, from_env
from pipefill.probe.recorder import Recorder, Span, Stage
from pipefill.traces.clock import ClockError, ClockMap, SyncPoint, fit_clock

__all__ = ["ClockError", "ClockMap", "NullRecorder", "ProbeEnvError", "Recorder", "Span",
           "Stage", "SyncPoint", "fit_clock", "from_env", "sync_clocks"]
