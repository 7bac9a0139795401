"""Models: the principal model (Eq. 1) and the collaborator (Eq. 2)."""
from .principal import Principal, build_principal

__all__ = ["Principal", "build_principal", "Collaborator"]


def __getattr__(name):  # lazy: the collaborator module is optional at import time
    if name == "Collaborator":
        from .collaborator import Collaborator
        return Collaborator
    raise AttributeError(name)
