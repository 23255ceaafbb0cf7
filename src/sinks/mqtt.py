"""MQTT sink (paho-mqtt 2.x) with Home Assistant discovery.

Per meter: `<prefix>/<meter>/power` carries the power as the meter makes
each reading (the live path: before the reading's commit), `<prefix>/
<meter>/state` the latest committed reading, both as retained JSON, and
`<prefix>/<meter>/availability` says `online`, or `offline` as the
connection's last will and on a clean stop. Each meter has its own
connection so that each has its own last will. On every (re)connect the
availability, the discovery configs, the last power and the last state are
published again, because a broker restarted without persistence forgets
retained messages.

Home Assistant's power sensor reads the power topic, its energy sensor the
state topic. A live reading may be lost with the uncommitted tail in a
power cut; a power value that is lost harms nothing, but an energy total
that went down would make Home Assistant count the whole total again (a
`total_increasing` sensor that falls is a meter reset), so energy goes out
only once committed, never lower than before.

The state is a current value, not a history: each batch publishes the
latest reading of each meter (at most once per flush_interval_s) at QoS 1,
and the cursor moves only after the broker acknowledged it. While the sink
catches up (after a restart or an outage) only the newest committed
reading is published, never an older one in between.
"""

from __future__ import annotations

import json
import os
import random
import socket
import ssl
import threading
from typing import Any, Dict, List, Optional, Sequence

from core.csvformat import format_time
from core.meter import Reading
from core.options import Option, SettingsError, validate
from sinks.base import Sink, SinkError, answers

CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0
RECONNECT_MIN_S = 1.0  # first reconnect after 1 to 3 s, then doubling

TLS_OPTIONS = {
    "ca_certs": Option("path", None, nullable=True),
    "certfile": Option("path", None, nullable=True),
    "keyfile": Option("path", None, nullable=True),
    "insecure": Option("bool", False),
}


def check_tls(value: Any) -> Optional[str]:
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
    problem = _check_pem(values["ca_certs"], values["certfile"], values["keyfile"])
    if problem:
        return problem
    if values["keyfile"] and not values["certfile"]:
        return "tls['keyfile'] needs tls['certfile'] beside it"
    return None


def _not_empty(value: str) -> Optional[str]:
    return None if value.strip() else "expected a non-empty host name"


def _check_pem(
    ca_certs: Optional[str], certfile: Optional[str], keyfile: Optional[str]
) -> Optional[str]:
    """TLS files must be PEM, or every connection would fail at run time."""
    if ca_certs is not None:
        try:
            ssl.create_default_context().load_verify_locations(cafile=ca_certs)
        except (ssl.SSLError, OSError, ValueError) as exc:
            return (
                f"tls['ca_certs'] = {ca_certs!r}: not PEM CA certificates "
                f"({getattr(exc, 'reason', None) or exc}); expected a file with "
                "-----BEGIN CERTIFICATE----- blocks"
            )
    for key, path, marker in (
        ("certfile", certfile, b"-----BEGIN CERTIFICATE-----"),
        ("keyfile", keyfile, b"PRIVATE KEY-----"),
    ):
        if path is None:
            continue
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 20)
        except OSError as exc:
            return f"tls[{key!r}] = {path!r}: cannot read it ({exc.strerror})"
        if marker not in head:
            return f"tls[{key!r}] = {path!r}: not a PEM file (no {marker.decode()})"
    return None


def check_prefix(value: str) -> Optional[str]:
    if not value or value.startswith("/") or value.endswith("/"):
        return "expected a topic prefix without leading or trailing '/'"
    if any(c in value for c in "+#"):
        return "MQTT wildcards + and # are not allowed in a topic"
    return None


# The keys of the state JSON, in order (the manual lists them from here).
STATE_FIELDS = (
    "time",
    "meter",
    "pulses",
    "energy_kwh",
    "power_w",
    "interval_s",
    "estimate",
)


# Added where the meter has export (an electricity meter's total export).
EXPORT_FIELD = "export_kwh"
# A gas or water meter's state names its volume and flow for what they are.
VOLUME_KEYS = {"energy_kwh": "volume_m3", "power_w": "flow_m3h"}


def state_payload(r: Reading, volume: bool = False) -> str:
    """The state JSON; `volume` for a gas or water meter (m3, m3/h)."""
    values = (
        format_time(r.time),
        r.meter,
        r.pulses,
        round(r.energy_kwh, 6),
        None if r.power_w is None else round(r.power_w, 4 if volume else 2),
        None if r.interval_s is None else round(r.interval_s, 3),
        bool(r.estimate),
    )
    if volume:
        keys = [VOLUME_KEYS.get(k, k) for k in STATE_FIELDS]
        return json.dumps(dict(zip(keys, values)), separators=(",", ":"))
    state = dict(zip(STATE_FIELDS, values))
    if r.export_kwh is not None:
        state[EXPORT_FIELD] = round(r.export_kwh, 6)
    return json.dumps(state, separators=(",", ":"))


# Home Assistant's sensors per kind of meter: (key, name, unit, device
# class, state class, state key, display precision). The Energy dashboard
# takes gas and water in m³ (it refuses "m3").
SENSORS = {
    "electricity": (
        ("power", "Power", "W", "power", "measurement", "power_w", 0),
        ("energy", "Energy", "kWh", "energy", "total_increasing", "energy_kwh", 3),
    ),
    "gas": (
        ("flow", "Flow", "m³/h", "volume_flow_rate", "measurement", "flow_m3h", 3),
        ("volume", "Gas", "m³", "gas", "total_increasing", "volume_m3", 3),
    ),
    "water": (
        ("flow", "Flow", "m³/h", "volume_flow_rate", "measurement", "flow_m3h", 3),
        ("volume", "Water", "m³", "water", "total_increasing", "volume_m3", 3),
    ),
}
EXPORT_SENSOR = (
    "export",
    "Energy exported",
    "kWh",
    "energy",
    "total_increasing",
    EXPORT_FIELD,
    3,
)
# The sensors read from the power topic (the live path); the rest follow the
# commit on the state topic.
LIVE = ("power", "flow")
DEVICE_NAMES = {"electricity": "Electricity", "gas": "Gas", "water": "Water"}


# The keys of the power topic's JSON, in order (the manual lists them).
POWER_FIELDS = ("time", "power_w", "estimate")


def power_payload(r: Reading, volume: bool = False) -> str:
    """The live power of a reading whose power is known (a gas or water
    meter's flow in m³/h, under flow_m3h)."""
    rate = round(r.power_w or 0.0, 4 if volume else 2)
    keys = [VOLUME_KEYS.get(k, k) for k in POWER_FIELDS] if volume else POWER_FIELDS
    values = (format_time(r.time), rate, bool(r.estimate))
    return json.dumps(dict(zip(keys, values)), separators=(",", ":"))


def discovery_configs(
    meter: str,
    prefix: str,
    discovery_prefix: str,
    version: str,
    kind: str = "electricity",
    export: bool = False,
) -> Dict[str, str]:
    """Home Assistant MQTT discovery: topic -> retained JSON config. With
    `export`, a second energy sensor for the export total (its unique_id
    ends in _export), so the Energy dashboard can take grid consumption and
    return to grid."""
    node = f"power_{meter}"
    device = {
        "identifiers": [node],
        "name": f"{DEVICE_NAMES[kind]} meter {meter}",
        "manufacturer": "power",
        "model": "Meter monitor",
        "sw_version": version,
    }
    common = {
        "state_topic": f"{prefix}/{meter}/state",
        "availability_topic": f"{prefix}/{meter}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        # No json_attributes_topic: on the state topic it would make Home
        # Assistant store a row of attributes with every reading.
        "device": device,
        # Who sent this config: Home Assistant's log, repair and deprecation
        # messages name power and its version instead of "the integration".
        # No support_url: it must be a public web address, and power has
        # none to give.
        "origin": {"name": "power", "sw_version": version},
    }
    table = SENSORS[kind] + ((EXPORT_SENSOR,) if export else ())
    sensors = {
        key: {
            "name": name,
            # Live: each reading as the meter makes it, not at the commit.
            **({"state_topic": f"{prefix}/{meter}/power"} if key in LIVE else {}),
            "unit_of_measurement": unit,
            "device_class": device_class,
            "state_class": state_class,
            "value_template": "{{ value_json." + field + " }}",
            "suggested_display_precision": precision,
        }
        for key, name, unit, device_class, state_class, field, precision in table
    }
    out = {}
    for key, sensor in sensors.items():
        config = {
            **common,
            **sensor,
            "unique_id": f"{node}_{key}",
            # The entity id (Home Assistant 2025.10 and later; the older
            # object_id stops working in 2026.4 and is not sent).
            "default_entity_id": f"sensor.{node}_{key}",
        }
        out[f"{discovery_prefix}/sensor/{node}/{key}/config"] = json.dumps(config)
    return out


class Connection:
    """One MQTT client connection (paho-mqtt 2.x, MQTT 3.1.1): TLS, connect
    with a timeout, publishes acknowledged before they count, a clean close.
    Shared by the MQTT and ThingsBoard sinks; subclasses publish what a
    (re)connect needs in on_connected()."""

    def __init__(
        self,
        options: Dict[str, Any],
        client_id: str,
        username: Optional[str],
        password: Optional[str] = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.options = options
        self.where = f"MQTT broker {options['host']}:{options['port']}"
        self.connected = threading.Event()
        self.refused: Optional[str] = None
        self._answered = threading.Event()  # CONNACK, accepted or not
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
        )
        if username is not None:
            client.username_pw_set(username, password)
        tls = options["tls"]
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
        # paho retries a lost connection after min_delay, doubling up to
        # max_delay, with no jitter of its own: a random first delay per
        # connection keeps a fleet from reconnecting in lockstep after a
        # broker restart (paho takes a float here).
        first = random.Random().uniform(RECONNECT_MIN_S, 3 * RECONNECT_MIN_S)
        client.reconnect_delay_set(min_delay=first, max_delay=60)
        client.max_queued_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client

    def connect(self) -> None:
        o = self.options
        try:
            self.client.connect(o["host"], o["port"], keepalive=o["keepalive_s"])
        except ssl.SSLError as exc:
            raise SinkError(
                f"{self.where}: TLS failed ({exc.reason or exc}); check the 'tls' "
                "settings (ca_certs must be the CA that signed the broker's "
                "certificate)"
            ) from None
        except (OSError, ValueError) as exc:
            raise SinkError(f"{self.where}: cannot connect ({exc})") from None
        self.client.loop_start()
        self._answered.wait(CONNECT_TIMEOUT_S)
        if not self.connected.is_set():
            refused = self.refused
            self.close(clean=False)
            if refused:
                raise SinkError(
                    f"{self.where} refused the connection: {refused}", False
                )
            raise SinkError(f"{self.where}: no answer within {CONNECT_TIMEOUT_S:g} s")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            self._answered.set()
            return
        self.refused = None
        self.on_connected(client)
        self.connected.set()
        self._answered.set()

    def on_connected(self, client) -> None:
        """Called on every (re)connect, in the network thread."""

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        """Publish and wait until the broker acknowledged it (QoS 1 and 2),
        or raise SinkError."""
        qos = self.options["qos"]
        if not self.connected.is_set():
            raise SinkError(f"{self.where}: not connected (reconnecting)")
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise SinkError(f"MQTT publish to {topic}: {exc}") from None
        if qos > 0 and not info.is_published():
            raise SinkError(f"MQTT publish to {topic}: no acknowledgement")

    def before_close(self) -> None:
        """Last words on a clean close, while still connected."""

    def close(self, clean: bool = True) -> None:
        if clean and self.connected.is_set():
            self.before_close()
            self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()


def default_client_id(client_id: Optional[str], meter: str, several: bool) -> str:
    """This host's id for one meter's connection: unique per host and meter
    unless the user named one for a single meter."""
    base = client_id or f"power-{socket.gethostname()}"
    if client_id is None or several:
        return f"{base}-{meter}"
    return base


class _Link(Connection):
    """One meter's connection: its own client, last will and last state."""

    def __init__(self, sink: MQTTSink, meter: str) -> None:
        o = sink.options
        client_id = default_client_id(o["client_id"], meter, len(sink.meters) > 1)
        super().__init__(o, client_id, o["username"], o["password"])
        self.sink = sink
        self.meter = meter
        self.topic_state = f"{o['prefix']}/{meter}/state"
        self.topic_power = f"{o['prefix']}/{meter}/power"
        self.topic_availability = f"{o['prefix']}/{meter}/availability"
        self.last_state: Optional[str] = None
        self.last_power: Optional[str] = None
        self.export = False  # a reading with export seen: its sensor announced
        self._lock = threading.Lock()
        self.client.will_set(
            self.topic_availability, "offline", qos=o["qos"], retain=True
        )

    def on_connected(self, client) -> None:
        o = self.options
        client.publish(self.topic_availability, "online", qos=o["qos"], retain=True)
        if o["discovery_prefix"]:
            for topic, payload in self.discovery().items():
                client.publish(topic, payload, qos=o["qos"], retain=True)
        with self._lock:
            state, power = self.last_state, self.last_power
        if state is not None:
            client.publish(self.topic_state, state, qos=o["qos"], retain=True)
        if power is not None:
            client.publish(self.topic_power, power, qos=o["qos"], retain=True)

    def publish_power(self, reading: Reading) -> None:
        """Live: hand the power to the client without waiting for the
        broker; while disconnected it is kept for the reconnect only."""
        payload = power_payload(reading, self.sink.is_volume(self.meter))
        with self._lock:
            self.last_power = payload
        if self.connected.is_set():
            o = self.options
            self.client.publish(self.topic_power, payload, qos=o["qos"], retain=True)

    def discovery(self) -> Dict[str, str]:
        o = self.options
        kind = self.sink.kinds.get(self.meter, "electricity")
        return discovery_configs(
            self.meter,
            o["prefix"],
            o["discovery_prefix"],
            self.sink.version,
            kind,
            self.export,
        )

    def publish_state(self, reading: Reading) -> None:
        if reading.export_kwh is not None and not self.export:
            # The meter has export: its sensor is announced before the
            # first state that carries it.
            self.export = True
            if self.options["discovery_prefix"]:
                for topic, payload in self.discovery().items():
                    if topic.endswith("/export/config"):
                        self.publish(topic, payload, retain=True)
        payload = state_payload(reading, self.sink.is_volume(self.meter))
        self.publish(self.topic_state, payload, retain=True)
        with self._lock:
            self.last_state = payload

    def before_close(self) -> None:
        o = self.options
        info = self.client.publish(
            self.topic_availability, "offline", qos=o["qos"], retain=True
        )
        try:
            info.wait_for_publish(0.5)
        except (RuntimeError, ValueError):
            pass


class MQTTSink(Sink):
    OPTIONS = {
        "host": Option("str", "localhost", check=_not_empty),
        "port": Option("int", 1883, minimum=1, maximum=65535),
        "username": Option("str", None, nullable=True),
        "password": Option("str", None, nullable=True, secret=True),
        "tls": Option("any", None, nullable=True, check=check_tls),
        "prefix": Option("str", "power", check=check_prefix),
        "discovery_prefix": Option(
            "str", "homeassistant", nullable=True, check=check_prefix
        ),
        "qos": Option("int", 1, choices=(0, 1, 2)),
        "client_id": Option("str", None, nullable=True),
        "keepalive_s": Option("int", 60, minimum=5, maximum=3600),
    }
    PACKAGES = {"paho.mqtt": "paho-mqtt"}
    LIVE = True

    def __init__(self, name, options, log, meters=()) -> None:
        super().__init__(name, options, log, meters)
        self.links: Dict[str, _Link] = {}
        self._state: Dict[str, str] = {}

    def describe(self) -> str:
        return f"{self.name} (mqtt://{self.options['host']}:{self.options['port']})"

    def probe(self) -> bool:
        return answers(self.options["host"], self.options["port"])

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

    def live(self, readings: Sequence[Reading]) -> None:
        for reading in readings:
            link = self.links.get(reading.meter)
            if link is not None and reading.power_w is not None:
                link.publish_power(reading)

    def write(self, batch: Sequence[Reading]) -> Optional[int]:
        if self.more_waiting and not self.input_ended:
            # Catching up: newer committed readings wait. Publishing this
            # batch's newest would send Home Assistant an energy total older
            # than one it may have had before a restart; skip to the newest.
            return None
        latest: Dict[str, Reading] = {}
        for reading in batch:
            latest[reading.meter] = reading
        for meter, reading in latest.items():
            link = self._link(meter)
            link.publish_state(reading)
            self._state[meter] = link.last_state or ""
        return None

    def close(self) -> None:
        links: List[_Link] = list(self.links.values())
        self.links = {}
        for link in links:
            try:
                link.close()
            except Exception as exc:  # closing must never fail the stop
                self.log.debug("sink %s: closing: %s", self.name, exc)
