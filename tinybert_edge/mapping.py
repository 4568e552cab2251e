"""Layer mapping n = g(m) between student and teacher Transformer layers, as validated data.

Layers are numbered as in the paper: 0 is the embedding layer, 1..M (student) and 1..N
(teacher) are Transformer layers. The embedding pair (0, 0) is always distilled and is not
part of the map; only Transformer layers are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError

KINDS = ("uniform", "top", "bottom", "explicit")


@dataclass(frozen=True)
class LayerMap:
    """Which teacher layer each student layer learns from.

    Attributes:
        kind: how the map was made: "uniform", "top", "bottom" or "explicit".
        student_layers: M, the number of student Transformer layers.
        teacher_layers: N, the number of teacher Transformer layers.
        teacher_for_student: g(1)..g(M), 1-based teacher layer indices, one per student layer.
    """

    kind: str
    student_layers: int
    teacher_layers: int
    teacher_for_student: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown layer map kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.student_layers < 1 or self.teacher_layers < 1:
            raise ConfigError(
                f"layer counts must be >= 1, got student={self.student_layers}, teacher={self.teacher_layers}"
            )
        if len(self.teacher_for_student) != self.student_layers:
            raise ConfigError(
                f"layer map gives {len(self.teacher_for_student)} teacher layers for "
                f"{self.student_layers} student layers; give exactly one per student layer"
            )
        bad = [n for n in self.teacher_for_student if not 1 <= n <= self.teacher_layers]
        if bad:
            raise ConfigError(
                f"layer map {list(self.teacher_for_student)} names teacher layers {bad} outside "
                f"1..{self.teacher_layers}; the teacher has {self.teacher_layers} layers"
            )

    @classmethod
    def uniform(cls, student_layers: int, teacher_layers: int) -> "LayerMap":
        """Paper default g(m) = m*N/M, rounded down when N/M is not whole.

        4 student layers on 12 teacher layers give 3, 6, 9, 12; on 6 teacher layers
        (MiniLM) they give 1, 3, 4, 6. The last student layer always learns from the last
        teacher layer.

        Raises:
            ConfigError: the student has more layers than the teacher (use an explicit map).
        """
        _check_counts(student_layers, teacher_layers)
        if student_layers > teacher_layers:
            raise ConfigError(
                f"uniform map needs student layers <= teacher layers, got {student_layers} > "
                f"{teacher_layers}; pass an explicit map such as --layer-map 1,1,2,..."
            )
        pairs = tuple(math.floor(m * teacher_layers / student_layers) for m in range(1, student_layers + 1))
        return cls("uniform", student_layers, teacher_layers, pairs)

    @classmethod
    def top(cls, student_layers: int, teacher_layers: int) -> "LayerMap":
        """Student layers learn from the top M teacher layers: g(m) = N - M + m."""
        _check_counts(student_layers, teacher_layers)
        if student_layers > teacher_layers:
            raise ConfigError(f"top map needs student layers <= teacher layers, got {student_layers} > {teacher_layers}")
        offset = teacher_layers - student_layers
        return cls("top", student_layers, teacher_layers, tuple(offset + m for m in range(1, student_layers + 1)))

    @classmethod
    def bottom(cls, student_layers: int, teacher_layers: int) -> "LayerMap":
        """Student layers learn from the bottom M teacher layers: g(m) = m."""
        _check_counts(student_layers, teacher_layers)
        if student_layers > teacher_layers:
            raise ConfigError(
                f"bottom map needs student layers <= teacher layers, got {student_layers} > {teacher_layers}"
            )
        return cls("bottom", student_layers, teacher_layers, tuple(range(1, student_layers + 1)))

    @classmethod
    def explicit(cls, teacher_for_student: list[int] | tuple[int, ...], student_layers: int, teacher_layers: int) -> "LayerMap":
        """A user-given list g(1)..g(M) of 1-based teacher layers."""
        _check_counts(student_layers, teacher_layers)
        return cls("explicit", student_layers, teacher_layers, tuple(int(n) for n in teacher_for_student))

    @classmethod
    def parse(cls, spec: str, student_layers: int, teacher_layers: int) -> "LayerMap":
        """Build a map from a CLI string: "uniform", "top", "bottom" or "3,6,9,12".

        Raises:
            ConfigError: unknown kind, malformed list or out-of-range layers.
        """
        spec = spec.strip()
        if spec in ("uniform", "top", "bottom"):
            return getattr(cls, spec)(student_layers, teacher_layers)
        try:
            layers = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                f"layer map {spec!r} is neither uniform/top/bottom nor a comma-separated list of teacher layers"
            ) from None
        return cls.explicit(layers, student_layers, teacher_layers)

    def pairs(self) -> list[tuple[int, int]]:
        """(student layer, teacher layer) pairs, embeddings (0, 0) first."""
        return [(0, 0)] + [(m, n) for m, n in zip(range(1, self.student_layers + 1), self.teacher_for_student)]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "student_layers": self.student_layers,
            "teacher_layers": self.teacher_layers,
            "teacher_for_student": list(self.teacher_for_student),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LayerMap":
        return cls(d["kind"], int(d["student_layers"]), int(d["teacher_layers"]), tuple(d["teacher_for_student"]))


def _check_counts(student_layers: int, teacher_layers: int) -> None:
    if student_layers < 1 or teacher_layers < 1:
        raise ConfigError(f"layer counts must be >= 1, got student={student_layers}, teacher={teacher_layers}")
