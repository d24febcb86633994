"""Onboard your users' social accounts through UniPost's hosted Connect flow."""

__version__ = "0.1.0"
