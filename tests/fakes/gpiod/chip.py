"""gpiod.chip: Chip, an open GPIO chip.

Not implemented (AttributeError): fd, fileno(), watch_line_info(),
unwatch_line_info(), wait_info_event(), read_info_event().
"""

from __future__ import annotations

import errno
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from . import _fake_kernel
from .chip_info import ChipInfo
from .exception import ChipClosedError
from .line import Value
from .line_info import LineInfo
from .line_request import LineRequest
from .line_settings import LineSettings, _line_settings_to_ext

__all__ = ["Chip"]

Config = Dict[Union[Iterable[Union[int, str]], int, str], Optional[LineSettings]]


def _config_items(config: Config) -> Iterator[Tuple[Union[int, str], Any]]:
    """Keys are offsets, names, or iterables of them sharing one settings."""
    for key, settings in config.items():
        if isinstance(key, (int, str)):
            yield key, settings
        else:
            for subkey in key:
                yield subkey, settings


class Chip:
    def __init__(self, path: str) -> None:
        self._chip: Optional[_fake_kernel._Chip] = _fake_kernel.open_chip(path)
        self._path = path

    def __bool__(self) -> bool:
        return self._chip is not None

    def __enter__(self) -> Chip:
        self._check_closed()
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()

    def _check_closed(self) -> _fake_kernel._Chip:
        if self._chip is None:
            raise ChipClosedError()
        return self._chip

    def close(self) -> None:
        """Close the chip; requests made through it stay valid."""
        self._chip = None

    @property
    def path(self) -> str:
        self._check_closed()
        return self._path

    def get_info(self) -> ChipInfo:
        name, label, num_lines = self._check_closed().info()
        return ChipInfo(name, label, num_lines)

    def line_offset_from_id(self, id: Union[int, str]) -> int:  # noqa: A002
        """An offset, a line name, or an offset written as a string."""
        chip = self._check_closed()
        if isinstance(id, int):
            offset = id
        else:
            try:
                return chip.line_offset_from_name(id)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                try:
                    offset = int(id)
                except ValueError:
                    raise exc from None
        if offset >= self.get_info().num_lines:
            raise ValueError("line offset of out range")
        return offset

    def get_line_info(self, line: Union[int, str]) -> LineInfo:
        chip = self._check_closed()
        return LineInfo(**chip.line_info(self.line_offset_from_id(line)))

    def request_lines(
        self,
        config: Config,
        consumer: Optional[str] = None,
        event_buffer_size: Optional[int] = None,
        output_values: Optional[Dict[Union[int, str], Value]] = None,
    ) -> LineRequest:
        chip = self._check_closed()
        mapped_outputs = None
        if output_values:
            mapped_outputs = {
                self.line_offset_from_id(k): v for k, v in output_values.items()
            }
        name_map: Dict[str, int] = {}
        lines: List[Union[int, str]] = []
        configs: List[Tuple[int, Dict[str, Any]]] = []
        outputs: List[int] = []
        seen = set()
        for line, settings in _config_items(config):
            offset = self.line_offset_from_id(line)
            if offset in seen:
                raise ValueError(
                    f"line must be configured exactly once - offset {offset} repeats"
                )
            seen.add(offset)
            lines.append(line)
            if mapped_outputs:
                outputs.append(mapped_outputs.get(offset, Value.INACTIVE).value)
            if isinstance(line, str):
                name_map[line] = offset
            else:
                name = chip.line_name(offset)
                if name and name not in name_map:
                    name_map[name] = offset
            configs.append((offset, _line_settings_to_ext(settings or LineSettings())))
        req = _fake_kernel.request_lines(
            chip, configs, outputs or None, consumer, event_buffer_size
        )
        request = LineRequest(req)
        request._chip_name = req.chip_name
        request._offsets = list(req.offsets)
        request._name_map = name_map
        request._lines = lines
        return request

    def __repr__(self) -> str:
        if self._chip is None:
            return "<Chip CLOSED>"
        return f'gpiod.Chip("{self._path}")'

    def __str__(self) -> str:
        if self._chip is None:
            return "<Chip CLOSED>"
        return f'<Chip path="{self._path}" info={self.get_info()}>'
