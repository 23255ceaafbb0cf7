"""ThingsBoard sink: every reading as telemetry over ThingsBoard's MQTT API.

ThingsBoard is its own MQTT server. A device connects with its access token
as the username (no password) and publishes telemetry to
`v1/devices/me/telemetry`; a gateway device publishes for several devices
over one connection to `v1/gateway/telemetry`, as
`{"<device>": [{"ts": ..., "values": {...}}, ...]}`. Unlike the MQTT sink's
state topic, every reading is sent: batches go as arrays of
`{"ts": <epoch ms>, "values": {...}}` with each reading's own time, so a
backlog after an outage lands at the times it was measured. QoS 1: the
journal cursor moves only past what the server acknowledged. ThingsBoard
keys telemetry by device, key and ts, so a reading sent twice after a crash
overwrites itself.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Dict, List, Optional, Sequence, Tuple

from core.meter import Reading
from core.options import Option, SettingsError
from sinks.base import Sink, SinkError, answers
from sinks.mqtt import Connection, check_tls, default_client_id

DEVICE_TOPIC = "v1/devices/me/telemetry"
GATEWAY_TOPIC = "v1/gateway/telemetry"
GATEWAY_CONNECT = "v1/gateway/connect"
GATEWAY_DISCONNECT = "v1/gateway/disconnect"
# ThingsBoard refuses MQTT messages over 64 KiB by default
# (transport.mqtt.netty.max_payload_size); stay below with room to spare.
MAX_PAYLOAD_BYTES = 60_000


def _check_tokens(value: Any) -> Optional[str]:
    if not value or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()
    ):
        return "expected a dict of meter name -> access token (strings)"
    return None


def _check_device_name(value: str) -> Optional[str]:
    try:
        name = value.format(meter="m", host="h")
    except (KeyError, IndexError, ValueError):
        return "expected a name with no placeholders but {meter} and {host}"
    if not name.strip():
        return "expected a non-empty device name"
    return None


def telemetry(r: Reading, volume: bool = False) -> Dict[str, Any]:
    """One reading as ThingsBoard telemetry with a client-side timestamp
    (`volume`: a gas or water meter's, in m³ and m³/h)."""
    values: Dict[str, Any] = {
        "volume_m3" if volume else "energy_kwh": round(r.energy_kwh, 6),
        "pulses": r.pulses,
    }
    if r.power_w is not None:
        if volume:
            values["flow_m3h"] = round(r.power_w, 4)
        else:
            values["power_w"] = round(r.power_w, 2)
    if r.interval_s is not None:
        values["interval_s"] = round(r.interval_s, 3)
    if r.export_kwh is not None:
        values["export_kwh"] = round(r.export_kwh, 6)
    return {"ts": int(round(r.time * 1000)), "values": values}


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def pack(
    entries: List[Tuple[int, str, Dict[str, Any]]], gateway: bool
) -> List[Tuple[str, List[int]]]:
    """Batch entries (index, device, telemetry) into payloads below
    MAX_PAYLOAD_BYTES, in batch order: (payload, indices it carries).
    Without the gateway every entry must belong to one device."""
    messages: List[Tuple[str, List[int]]] = []
    current: Dict[str, List[Dict[str, Any]]] = {}
    indices: List[int] = []
    size = 2
    for index, device, item in entries:
        text = _dump(item)
        extra = len(text) + 1 + (0 if device in current else len(_dump(device)) + 3)
        if indices and size + extra > MAX_PAYLOAD_BYTES:
            messages.append((_payload(current, gateway), indices))
            current, indices, size = {}, [], 2
            extra = len(text) + 1 + len(_dump(device)) + 3
        current.setdefault(device, []).append(item)
        indices.append(index)
        size += extra
    if indices:
        messages.append((_payload(current, gateway), indices))
    return messages


def _payload(current: Dict[str, List[Dict[str, Any]]], gateway: bool) -> str:
    if gateway:
        return _dump(current)
    (items,) = current.values()
    return _dump(items)


class _Device(Connection):
    """A connection with one access token: a device, or the gateway."""

    def __init__(self, sink: ThingsBoardSink, client_id: str, token: str) -> None:
        super().__init__(sink.options, client_id, token, None)
        o = sink.options
        self.where = f"ThingsBoard {o['host']}:{o['port']}"
        self.sink = sink

    def on_connected(self, client) -> None:
        if self.sink.options["gateway"]:  # tell it which devices it serves
            for device in self.sink.devices.values():
                client.publish(GATEWAY_CONNECT, _dump({"device": device}), qos=1)

    def before_close(self) -> None:
        if self.sink.options["gateway"]:
            infos = [
                self.client.publish(GATEWAY_DISCONNECT, _dump({"device": d}), qos=1)
                for d in self.sink.devices.values()
            ]
            for info in infos:
                try:
                    info.wait_for_publish(0.3)
                except (RuntimeError, ValueError):
                    pass


class ThingsBoardSink(Sink):
    PACKAGES = {"paho.mqtt": "paho-mqtt"}
    OPTIONS = {
        "host": Option("str", "localhost"),
        "port": Option("int", 1883, minimum=1, maximum=65535),
        # The device's access token; with "gateway", the gateway's.
        "token": Option("str", None, nullable=True, secret=True),
        # Several meters as several devices: meter name -> access token.
        "tokens": Option("dict", None, nullable=True, check=_check_tokens, secret=True),
        "gateway": Option("bool", False),
        # The device name of each meter through the gateway API.
        "device_name": Option("str", "{meter}", check=_check_device_name),
        "tls": Option("any", None, nullable=True, check=check_tls),
        "qos": Option("int", 1, choices=(0, 1)),
        "client_id": Option("str", None, nullable=True),
        "keepalive_s": Option("int", 60, minimum=5, maximum=3600),
    }

    @classmethod
    def check(cls, where: str, options: dict, meters: Sequence[str]) -> None:
        token, tokens = options["token"], options["tokens"]
        if options["gateway"]:
            if not token or tokens:
                raise SettingsError(
                    f"{where}['gateway'] = True: set 'token' to the gateway "
                    "device's access token, and no 'tokens'"
                )
            names = [options["device_name"].format(meter=m, host="h") for m in meters]
            if len(set(names)) < len(names):
                raise SettingsError(
                    f"{where}['device_name'] = {options['device_name']!r}: two "
                    "meters would share a device; put {meter} in it"
                )
            return
        if token and tokens:
            raise SettingsError(
                f"{where}: set 'token' (one meter) or 'tokens' (one per meter), "
                "not both"
            )
        if tokens:
            missing = [m for m in meters if m not in tokens]
            unknown = sorted(set(tokens) - set(meters))
            if missing or unknown:
                raise SettingsError(
                    f"{where}['tokens']: expected one access token for each "
                    f"meter ({', '.join(meters)}); "
                    + (f"missing {', '.join(missing)}" if missing else "")
                    + ("; " if missing and unknown else "")
                    + (f"no meter named {', '.join(unknown)}" if unknown else "")
                )
            return
        if not token:
            raise SettingsError(
                f"{where}['token'] is missing: expected the ThingsBoard device's "
                "access token (its username on the MQTT API)"
            )
        if len(meters) > 1:
            raise SettingsError(
                f"{where}['token']: one device token for {len(meters)} meters; "
                "give each meter its own device in 'tokens', or set 'gateway': "
                "True with the token of a gateway device"
            )

    def __init__(self, name, options, log, meters=()) -> None:
        super().__init__(name, options, log, meters)
        host = socket.gethostname()
        self.devices = {
            m: options["device_name"].format(meter=m, host=host) for m in self.meters
        }
        self.links: Dict[str, _Device] = {}  # meter (or "" for the gateway)

    def describe(self) -> str:
        mode = "gateway" if self.options["gateway"] else "device"
        o = self.options
        return f"{self.name} (ThingsBoard {mode} API, {o['host']}:{o['port']})"

    def probe(self) -> bool:
        return answers(self.options["host"], self.options["port"])

    def _token(self, meter: str) -> str:
        o = self.options
        return o["tokens"][meter] if o["tokens"] else o["token"]

    def open(self) -> None:
        try:
            for key in [""] if self.options["gateway"] else self.meters:
                self._link(key)
        except SinkError:
            self.close()
            raise

    def _link(self, key: str) -> _Device:
        link = self.links.get(key)
        if link is None:
            o = self.options
            if key:
                client_id = default_client_id(o["client_id"], key, len(self.meters) > 1)
                link = _Device(self, client_id, self._token(key))
            else:
                client_id = default_client_id(o["client_id"], "gateway", False)
                link = _Device(self, client_id, o["token"])
            link.connect()
            self.links[key] = link
        return link

    def write(self, batch: Sequence[Reading]) -> Optional[int]:
        gateway = self.options["gateway"]
        plan: List[Tuple[str, str, List[int]]] = []  # (link key, payload, indices)
        if gateway:
            entries = [
                (
                    i,
                    self.devices.get(r.meter, r.meter),
                    telemetry(r, self.is_volume(r.meter)),
                )
                for i, r in enumerate(batch)
            ]
            plan = [("", p, idx) for p, idx in pack(entries, True)]
        else:
            per_meter: Dict[str, List[Tuple[int, str, Dict[str, Any]]]] = {}
            for i, r in enumerate(batch):
                per_meter.setdefault(r.meter, []).append(
                    (i, r.meter, telemetry(r, self.is_volume(r.meter)))
                )
            for meter, entries in per_meter.items():
                plan += [(meter, p, idx) for p, idx in pack(entries, False)]
            plan.sort(key=lambda step: step[2][0])  # the batch's order
        topic = GATEWAY_TOPIC if gateway else DEVICE_TOPIC
        done = [False] * len(batch)
        for key, payload, indices in plan:
            try:
                self._link(key).publish(topic, payload)
            except SinkError:
                taken = done.index(False)
                if taken == 0:
                    raise
                return taken  # the rest comes again
            for i in indices:
                done[i] = True
        return None

    def close(self) -> None:
        links = list(self.links.values())
        self.links = {}
        for link in links:
            try:
                link.close()
            except Exception as exc:  # closing must never fail the stop
                self.log.debug("sink %s: closing: %s", self.name, exc)
