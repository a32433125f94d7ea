"""meshcore.swim (under construction)."""
