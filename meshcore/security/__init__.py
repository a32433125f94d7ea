"""meshcore.security (under construction)."""
