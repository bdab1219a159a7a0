"""The error of a case file that cannot be used, and the one check of a field's choices.

Apart from :mod:`ddpinn.io.config` (which re-exports both) so that the section modules
(:mod:`ddpinn.io.config_stages`) raise the same error without importing the config module.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A case file or override that cannot be used; the message names the field."""


def check_choice(path: str, value, allowed) -> None:
    """Raise :class:`ConfigError` naming the field, the value and the choices, unless
    ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"field {path!r} = {value!r} is not allowed; "
                          f"choose one of: {', '.join(map(str, allowed))}")
