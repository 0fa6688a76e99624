"""The generator's options."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.synthetic.times import DEFAULT_START, parse_start

MIN_AGENTS = 3
MIN_INTERACTIONS = 30


@dataclass(frozen=True)
class Config:
    """Generator options (the CLI's, without the output folder). Validated on creation."""

    agents: int = 8
    interactions: int = 200
    seed: int = 1
    duplicates: float = 0.03
    malformed: float = 0.01
    shuffle: bool = False
    files: int = 1
    gzip: bool = False
    start: str = DEFAULT_START

    def __post_init__(self) -> None:
        if self.agents < MIN_AGENTS:
            raise ValueError(f"agents must be >= {MIN_AGENTS} (the special cases need three agents)")
        if self.interactions < MIN_INTERACTIONS:
            raise ValueError(f"interactions must be >= {MIN_INTERACTIONS} (the special cases need them)")
        for name in ("duplicates", "malformed"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1]")
        if self.files < 1:
            raise ValueError("files must be >= 1")
        parse_start(self.start)
