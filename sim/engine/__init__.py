"""The SimPy interpreter of policy programs (core, lanes, runner), processor sharing on shared
devices, streamed runs, and the choice between it and the fast path."""
