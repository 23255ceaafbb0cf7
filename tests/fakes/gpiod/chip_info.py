"""gpiod.chip_info: ChipInfo."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChipInfo"]


@dataclass(frozen=True, repr=False)
class ChipInfo:
    name: str
    label: str
    num_lines: int

    def __str__(self) -> str:
        return (
            f'<ChipInfo name="{self.name}" label="{self.label}" '
            f"num_lines={self.num_lines}>"
        )
