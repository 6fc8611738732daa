"""nbp's exception hierarchy.

Our exception hierarchy::

    NbpError                 anything nbp reports to a person (CLI: one line, exit 1)
    ├── ConfigError          configs/*.yaml or NBP_* environment is wrong
    ├── DataContractError    input breaks the bank export spec (CLI: exit 2)
    ├── FeatureStoreError    feature tables or Feast are missing / inconsistent
    ├── ModelUnavailable     no registered model (or champion) for a product
    ├── GuardrailFailed      a retrain's drift or calibration exceeds a configured guardrail
    └── SegmentError         a segment's filter or name is invalid (service: 422)

Messages name the thing, the rule and the remedy, e.g.
``transactions.csv: required column 'amount' missing (rule missing_column)``.
"""

from __future__ import annotations


class NbpError(Exception):
    """Base of every error nbp raises on purpose."""

    exit_code = 1


class ConfigError(NbpError):
    """The configuration is invalid."""


class DataContractError(NbpError):
    """The bank export breaks the spec so badly that the import stops."""

    exit_code = 2


class FeatureStoreError(NbpError):
    """Feature tables or the Feast store are missing or inconsistent."""


class ModelUnavailable(NbpError):
    """A product has no usable model in the registry."""


class GuardrailFailed(NbpError):
    """A drift or calibration figure of the retrain exceeds a limit of ``monitoring.guardrails``."""


class SegmentError(NbpError):
    """A segment (客群) filter that does not parse or names an unknown field or value, or an unknown
    saved segment; the message names the field, value and position and the nearest valid names."""
