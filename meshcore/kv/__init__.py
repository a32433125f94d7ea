"""meshcore.kv (under construction)."""
