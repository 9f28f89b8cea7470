"""The served model: the slot that swaps it on reload, where it comes from (files, the registry)."""
