"""The standalone service's configuration: a TOML file, the environment, flags.

``provider-proxy serve --config proxy.toml`` and ``provider-proxy check`` read it
with :func:`load_config`; see :doc:`standalone` for every key and variable.
"""

from ._keyfiles import ClientKeysFile, KeyFile, poll_all, reload_all
from ._layers import VARIABLES, Variable
from ._load import CONFIG_VARIABLE, ServiceConfig, load_config
from ._schema import ConfigInvalid, Problem

__all__ = [
    "CONFIG_VARIABLE",
    "VARIABLES",
    "ClientKeysFile",
    "ConfigInvalid",
    "KeyFile",
    "Problem",
    "ServiceConfig",
    "Variable",
    "load_config",
    "poll_all",
    "reload_all",
]
