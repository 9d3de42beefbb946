"""Jobs: the registry of kinds, the context they report through, and the runner."""
