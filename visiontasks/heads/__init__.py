"""Task heads on backbone features (no Lightning here)."""
