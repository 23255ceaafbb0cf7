"""The version of power, shown by --version and sent in MQTT discovery."""

VERSION = "1.0.0"
