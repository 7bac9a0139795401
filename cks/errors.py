"""Exception types shared by all of ``cks``.

Every error that is caused by the user's input (a bad file, a wrong argument
value, an inconsistent annotation) derives from :class:`CksError`, so callers
can catch one type. Data problems additionally derive from ``ValueError``.
"""


class CksError(Exception):
    """Base class of all errors raised on purpose by ``cks``."""


class CksDataError(CksError, ValueError):
    """A data file or an in-memory array is missing, unreadable or invalid.

    The message always names the offending file (when there is one) and says
    what to do about it.
    """


class CksConfigError(CksError, ValueError):
    """A configuration value is unknown, inconsistent or out of range."""


class CksCheckpointError(CksError, ValueError):
    """A checkpoint that is missing, corrupt or from an incompatible configuration."""
