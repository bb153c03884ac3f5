"""mlcd.pipeline (see DESIGN.md)."""
