"""mlcd.tracking (see DESIGN.md)."""
