"""ebm_cli: an experiment runner for energy-based models (after LeCun's lecture on EBMs)."""

__version__ = "0.1.0"
