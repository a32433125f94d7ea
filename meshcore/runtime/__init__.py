"""meshcore.runtime (under construction)."""
