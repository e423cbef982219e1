"""Site configuration: parsed once from YAML into frozen, SI-unit objects.

=================  ==========================================================================
``model``          every frozen config dataclass and enum (site, buses, drives, groups)
``site``           ``load_config``: the site file, its buses and drives, cross-field checks
``groups``         the optimizer's groups and settings
``profile``        register-map profiles: points, units, status bits, control words
``schedule``       time-of-use rates (tariff, grid emission factor)
``yamlsource``     YAML with line numbers, and the located issues a file collects
=================  ==========================================================================

This package re-exports the public API (``load_config`` and the config types) so that
``from agent.config import AgentConfig`` is the one import path of the config a consumer
needs; modules inside the package import from their siblings, never from here.
"""

from agent.config.model import (
    AgentConfig,
    BaselineConfig,
    BaselineMethod,
    BusConfig,
    ControlConfig,
    ControlMode,
    DriveConfig,
    LoadConfig,
    LoadKind,
    SiteConfig,
    Tariff,
    Transport,
)
from agent.config.site import load_config, parse_baseline, parse_listen, parse_load

__all__ = [
    "AgentConfig",
    "BaselineConfig",
    "BaselineMethod",
    "BusConfig",
    "ControlConfig",
    "ControlMode",
    "DriveConfig",
    "LoadConfig",
    "LoadKind",
    "SiteConfig",
    "Tariff",
    "Transport",
    "load_config",
    "parse_baseline",
    "parse_listen",
    "parse_load",
]
