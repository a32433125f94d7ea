"""meshcore.node (under construction)."""
