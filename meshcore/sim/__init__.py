"""meshcore.sim (under construction)."""
