"""meshcore.antientropy (under construction)."""
