"""meshcore.cli (under construction)."""
