# Settings for `make run`: a simulated meter, everything under ./var/.
METER = {"name": "demo", "pulses_per_kwh": 1000}
INPUT = {"backend": "simulated", "watts": 1500, "speed": 1}
LEDS = {"detect": 18, "ready": 23, "blink_ms": 100}
DATA_DIR = "var"
SINKS = [{"type": "file", "path": "var/power.csv"}]
