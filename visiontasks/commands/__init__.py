"""Subcommands of ``visiontasks`` besides fit/validate/test/predict."""
