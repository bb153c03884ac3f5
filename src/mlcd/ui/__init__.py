"""The web UI (``mlcd ui``): pages over the same queries the CLI runs; no logic of its own."""
