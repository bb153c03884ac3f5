"""mlcd.monitor (see DESIGN.md)."""
