"""Helpers every subsystem may use: atomic file writes and image suffixes (``fileio``),
checkpoint files (``checkpoint``), drawing (``visualize``), host allocator tuning
(``allocator``). They import nothing else of the package but ``detector.errors``."""
