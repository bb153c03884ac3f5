"""mlcd.evaluate (see DESIGN.md)."""
