"""The one error type every loader raises: it names the path and how to get the data."""


class DataError(ValueError):
    """Missing, corrupt or unknown data. The message says what and how to fix it."""
