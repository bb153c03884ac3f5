"""mlcd.serve (see DESIGN.md)."""
