"""Why training cannot go on."""


class TrainingError(ValueError):
    """Training cannot go on (e.g. the loss diverged)."""


class DivergedError(TrainingError):
    """The loss became NaN or infinite."""
