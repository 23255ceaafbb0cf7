# ruff: noqa: N999 (the package is named as the real library's)
"""A fake `RPi` package for the tests: only `RPi.GPIO`, see GPIO.py."""
