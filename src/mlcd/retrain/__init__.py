"""mlcd.retrain (see DESIGN.md)."""
