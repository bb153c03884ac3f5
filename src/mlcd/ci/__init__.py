"""mlcd.ci (see DESIGN.md)."""
