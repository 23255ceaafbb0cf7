"""MQTT sink (paho-mqtt 2.x) with Home Assistant discovery.

Per meter: `<prefix>/<meter>/state` carries the latest reading as retained
JSON, and `<prefix>/<meter>/availability` says `online`, or `offline` as the
connection's last will and on a clean stop. Each meter has its own
connection so that each has its own last will. On every (re)connect the
availability, the discovery configs and the last state are published again,
because a broker restarted without persistence forgets retained messages.

The state is a current value, not a history: each batch publishes the
latest reading of each meter (at most once per flush_interval_s) at QoS 1,
and the cursor moves only after the broker acknowledged it.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
from typing import Any, Dict, List, Optional, Sequence

from csvformat import format_time
from meter import Reading
from options import Option, SettingsError, validate
from sinks.base import Sink, SinkError

CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0

TLS_OPTIONS = {
    "ca_certs": Option("path", None, nullable=True),
    "certfile": Option("path", None, nullable=True),
    "keyfile": Option("path", None, nullable=True),
    "insecure": Option("bool", False),
}


def _check_tls(value: Any) -> Optional[str]:
    if value is True or value is False:
        return None
    if not isinstance(value, dict):
        return "expected None, True (system CAs) or a dict of " + ", ".join(TLS_OPTIONS)
    try:
        values = validate("tls", value, TLS_OPTIONS)
    except SettingsError as exc:
        return str(exc)
    for key in ("ca_certs", "certfile", "keyfile"):
        path = values[key]
        if path is not None and not os.path.isfile(path):
            return f"tls[{key!r}] = {path!r}: no such file"
    if values["keyfile"] and not values["certfile"]:
        return "tls['keyfile'] needs tls['certfile'] beside it"
    return None


def _check_prefix(value: str) -> Optional[str]:
    if not value or value.startswith("/") or value.endswith("/"):
        return "expected a topic prefix without leading or trailing '/'"
    if any(c in value for c in "+#"):
        return "MQTT wildcards + and # are not allowed in a topic"
    return None


# The keys of the state JSON, in order (the manual lists them from here).
STATE_FIELDS = ("time", "meter", "pulses", "energy_kwh", "power_w", "interval_s")


def state_payload(r: Reading) -> str:
    values = (
        format_time(r.time),
        r.meter,
        r.pulses,
        round(r.energy_kwh, 6),
        None if r.power_w is None else round(r.power_w, 2),
        None if r.interval_s is None else round(r.interval_s, 3),
    )
    return json.dumps(dict(zip(STATE_FIELDS, values)), separators=(",", ":"))


def discovery_configs(
    meter: str, prefix: str, discovery_prefix: str, version: str
) -> Dict[str, str]:
    """Home Assistant MQTT discovery: topic -> retained JSON config."""
    node = f"power_{meter}"
    device = {
        "identifiers": [node],
        "name": f"Electricity meter {meter}",
        "manufacturer": "power",
        "model": "Pulse LED monitor",
        "sw_version": version,
    }
    common = {
        "state_topic": f"{prefix}/{meter}/state",
        "availability_topic": f"{prefix}/{meter}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "json_attributes_topic": f"{prefix}/{meter}/state",
        "device": device,
    }
    sensors = {
        "power": {
            "name": "Power",
            "unit_of_measurement": "W",
            "device_class": "power",
            "state_class": "measurement",
            "value_template": "{{ value_json.power_w }}",
            "suggested_display_precision": 0,
        },
        "energy": {
            "name": "Energy",
            "unit_of_measurement": "kWh",
            "device_class": "energy",
            "state_class": "total_increasing",
            "value_template": "{{ value_json.energy_kwh }}",
            "suggested_display_precision": 3,
        },
    }
    out = {}
    for key, sensor in sensors.items():
        config = {
            **sensor,
            "unique_id": f"{node}_{key}",
            # (object_id, its predecessor, stopped working in HA 2026.4.)
            "default_entity_id": f"sensor.{node}_{key}",
            **common,
        }
        out[f"{discovery_prefix}/sensor/{node}/{key}/config"] = json.dumps(config)
    return out


class _Link:
    """One meter's connection: its own client, last will and last state."""

    def __init__(self, sink: MQTTSink, meter: str) -> None:
        import paho.mqtt.client as mqtt

        self.sink = sink
        self.meter = meter
        o = sink.options
        self.topic_state = f"{o['prefix']}/{meter}/state"
        self.topic_availability = f"{o['prefix']}/{meter}/availability"
        self.connected = threading.Event()
        self.refused: Optional[str] = None
        self.last_state: Optional[str] = None
        self._lock = threading.Lock()
        client_id = o["client_id"] or f"power-{socket.gethostname()}"
        if o["client_id"] is None or len(sink.meters) > 1:
            client_id = f"{client_id}-{meter}"
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
        )
        if o["username"] is not None:
            client.username_pw_set(o["username"], o["password"])
        tls = o["tls"]
        if tls:
            t = validate("tls", tls if isinstance(tls, dict) else {}, TLS_OPTIONS)
            try:
                client.tls_set(
                    ca_certs=t["ca_certs"], certfile=t["certfile"], keyfile=t["keyfile"]
                )
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise SinkError(
                    f"cannot load the MQTT 'tls' files ({exc}); ca_certs, "
                    "certfile and keyfile must be PEM files",
                    retry=False,
                ) from None
            if t["insecure"]:
                client.tls_insecure_set(True)
        client.will_set(self.topic_availability, "offline", qos=o["qos"], retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.max_queued_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client

    def connect(self) -> None:
        o = self.sink.options
        where = f"MQTT broker {o['host']}:{o['port']}"
        try:
            self.client.connect(o["host"], o["port"], keepalive=o["keepalive_s"])
        except ssl.SSLError as exc:
            raise SinkError(
                f"{where}: TLS failed ({exc.reason or exc}); check the 'tls' "
                "settings (ca_certs must be the CA that signed the broker's "
                "certificate)"
            ) from None
        except (OSError, ValueError) as exc:
            raise SinkError(f"{where}: cannot connect ({exc})") from None
        self.client.loop_start()
        if not self.connected.wait(CONNECT_TIMEOUT_S):
            refused = self.refused
            self.close(clean=False)
            if refused:
                raise SinkError(f"{where} refused the connection: {refused}", False)
            raise SinkError(f"{where}: no answer within {CONNECT_TIMEOUT_S:g} s")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            return
        self.refused = None
        o = self.sink.options
        client.publish(self.topic_availability, "online", qos=o["qos"], retain=True)
        if o["discovery_prefix"]:
            for topic, payload in discovery_configs(
                self.meter, o["prefix"], o["discovery_prefix"], self.sink.version
            ).items():
                client.publish(topic, payload, qos=o["qos"], retain=True)
        with self._lock:
            state = self.last_state
        if state is not None:
            client.publish(self.topic_state, state, qos=o["qos"], retain=True)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()

    def publish_state(self, reading: Reading) -> None:
        o = self.sink.options
        if not self.connected.is_set():
            raise SinkError(
                f"MQTT broker {o['host']}:{o['port']}: not connected (reconnecting)"
            )
        payload = state_payload(reading)
        info = self.client.publish(self.topic_state, payload, qos=o["qos"], retain=True)
        try:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise SinkError(f"MQTT publish to {self.topic_state}: {exc}") from None
        if o["qos"] > 0 and not info.is_published():
            raise SinkError(f"MQTT publish to {self.topic_state}: no acknowledgement")
        with self._lock:
            self.last_state = payload

    def close(self, clean: bool = True) -> None:
        if clean and self.connected.is_set():
            o = self.sink.options
            info = self.client.publish(
                self.topic_availability, "offline", qos=o["qos"], retain=True
            )
            try:
                info.wait_for_publish(0.5)
            except (RuntimeError, ValueError):
                pass
            self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()


class MQTTSink(Sink):
    OPTIONS = {
        "host": Option("str", "localhost"),
        "port": Option("int", 1883, minimum=1, maximum=65535),
        "username": Option("str", None, nullable=True),
        "password": Option("str", None, nullable=True, secret=True),
        "tls": Option("any", None, nullable=True, check=_check_tls),
        "prefix": Option("str", "power", check=_check_prefix),
        "discovery_prefix": Option(
            "str", "homeassistant", nullable=True, check=_check_prefix
        ),
        "qos": Option("int", 1, choices=(0, 1, 2)),
        "client_id": Option("str", None, nullable=True),
        "keepalive_s": Option("int", 60, minimum=5, maximum=3600),
    }
    PACKAGES = {"paho.mqtt": "paho-mqtt"}

    def __init__(self, name, options, log, meters=()) -> None:
        super().__init__(name, options, log, meters)
        self.links: Dict[str, _Link] = {}
        self._state: Dict[str, str] = {}

    def describe(self) -> str:
        return f"{self.name} (mqtt://{self.options['host']}:{self.options['port']})"

    def open(self) -> None:
        try:
            for meter in self.meters:
                self._link(meter)
        except SinkError:
            self.close()
            raise

    def _link(self, meter: str) -> _Link:
        link = self.links.get(meter)
        if link is None:
            link = _Link(self, meter)
            link.last_state = self._state.get(meter)
            link.connect()
            self.links[meter] = link
        return link

    def write(self, batch: Sequence[Reading]) -> Optional[int]:
        latest: Dict[str, Reading] = {}
        for reading in batch:
            latest[reading.meter] = reading
        for meter, reading in latest.items():
            link = self._link(meter)
            link.publish_state(reading)
            self._state[meter] = state_payload(reading)
        return None

    def close(self) -> None:
        links: List[_Link] = list(self.links.values())
        self.links = {}
        for link in links:
            try:
                link.close()
            except Exception as exc:  # closing must never fail the stop
                self.log.debug("sink %s: closing: %s", self.name, exc)
