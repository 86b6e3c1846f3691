"""Reading results folders, statistics across seeds, figures and report.md (needs no torch)."""
