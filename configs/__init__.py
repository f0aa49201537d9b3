"""Hydra configs, one primary config per ``worldsim`` subcommand; shipped as package data."""
