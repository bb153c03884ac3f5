"""mlcd.registry (see DESIGN.md)."""
