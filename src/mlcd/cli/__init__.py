"""The command line: argument parsing and rendering only; the work happens in the library."""
