"""Errors that stop training with a diagnosis (shown to the user as one line by the tools)."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed NaN/Inf for too many steps)."""
