"""Minimal shim for toolchains that predate PEP 517/621; metadata lives in pyproject.toml."""
from setuptools import setup

setup()
