"""Prometheus metrics: a typed sample and the text exposition format. Label values are escaped
(backslash, double quote, newline), so a crafted queue name can never forge a series."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    @classmethod
    def single(cls, name: str, kind: Literal["counter", "gauge"], help: str, value: float) -> Metric:
        return cls(name, kind, help, [({}, value)])


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(metrics: Iterable[Metric]) -> str:
    lines = []
    for metric in metrics:
        lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
        for labels, value in metric.samples:
            text = ",".join(f'{key}="{escape_label(label)}"' for key, label in sorted(labels.items()))
            lines.append(f"{metric.name}{{{text}}} {float(value)!r}" if text else f"{metric.name} {float(value)!r}")
    return "\n".join(lines) + "\n"
