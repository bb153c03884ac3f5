"""Dag: the stage graph drawn from outs -> deps, checked before anything runs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlcd.errors import ConfigError, UsageError
from mlcd.pipeline.stage import StageSpec


def _parents(path: str) -> Iterable[str]:
    """``a/b/c`` -> ``a/b``, ``a``."""
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


class Dag:
    """The stages and the edges between them (producer -> consumer).

    Args:
        stages: stage specs by name, in declaration order (the order ties are broken in).

    Raises:
        ConfigError: two stages write the same (or an overlapping) path, a stage depends on
            its own out, or the graph has a cycle (the message names the stages in it); the
            pipeline is misdeclared, so nothing runs (exit code 2).
    """

    def __init__(self, stages: Mapping[str, StageSpec]) -> None:
        self.stages = dict(stages)
        self.producers: dict[str, str] = {}  # path -> stage name
        self._check_outputs()
        self.upstream: dict[str, set[str]] = {name: set() for name in self.stages}
        self.downstream: dict[str, set[str]] = {name: set() for name in self.stages}
        for name, spec in self.stages.items():
            for dep in spec.deps:
                for producer in self.producers_of(dep):
                    if producer == name:
                        raise ConfigError(
                            f"stage '{name}' lists '{dep}' as a dep, but it also writes it",
                            hint="a stage cannot read its own output; split it into two stages",
                        )
                    self.upstream[name].add(producer)
                    self.downstream[producer].add(name)
        self.order = self._topological_order()

    # ------------------------------------------------------------ checks
    def _check_outputs(self) -> None:
        for name, spec in self.stages.items():
            for path in spec.produced:
                other = self.producers.get(path)
                if other is not None:
                    who = "twice" if other == name else f"by both '{other}' and '{name}'"
                    raise ConfigError(
                        f"'{path}' is written {who}",
                        hint="each out, metrics or plots file must belong to exactly one stage",
                    )
                self.producers[path] = name
        for path, name in self.producers.items():
            reports = {*self.stages[name].metrics, *self.stages[name].plots}
            for parent in _parents(path):
                other = self.producers.get(parent)
                if other == name and path in reports:
                    continue  # a stage's metrics or plots file inside its own out folder (DVC)
                if other is not None:
                    raise ConfigError(
                        f"'{path}' (stage '{name}') is inside '{parent}' (stage '{other}')",
                        hint="outs may not overlap: declare separate folders (only a stage's "
                        "own metrics and plots files may sit inside its out folder)",
                    )

    def producers_of(self, dep: str) -> set[str]:
        """Stages that write ``dep``, a folder above it, or something inside it."""
        found = set()
        if dep in self.producers:
            found.add(self.producers[dep])
        for parent in _parents(dep):
            if parent in self.producers:
                found.add(self.producers[parent])
        prefix = dep.rstrip("/") + "/"
        found.update(name for path, name in self.producers.items() if path.startswith(prefix))
        return found

    def _topological_order(self) -> list[str]:
        position = {name: index for index, name in enumerate(self.stages)}
        waiting = {name: len(up) for name, up in self.upstream.items()}
        ready = sorted((n for n, count in waiting.items() if count == 0), key=position.__getitem__)
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for child in sorted(self.downstream[name], key=position.__getitem__):
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
            ready.sort(key=position.__getitem__)
        if len(order) != len(self.stages):
            cycle = self._find_cycle({n for n in self.stages if n not in order})
            raise ConfigError(
                f"the pipeline has a cycle: {' -> '.join(cycle)}",
                hint="a stage may not depend, directly or not, on its own outs; "
                "break the cycle by removing one of these deps",
            )
        return order

    def _find_cycle(self, candidates: set[str]) -> list[str]:
        visiting: list[str] = []
        done: set[str] = set()

        def visit(name: str) -> list[str] | None:
            if name in visiting:
                return [*visiting[visiting.index(name) :], name]
            if name in done:
                return None
            visiting.append(name)
            for parent in sorted(self.upstream[name] & candidates):
                cycle = visit(parent)
                if cycle:
                    return cycle
            visiting.pop()
            done.add(name)
            return None

        for name in sorted(candidates):
            cycle = visit(name)
            if cycle:
                # visit walks consumer -> producer: reverse to read in data-flow order
                return list(reversed(cycle))
        return sorted(candidates)

    def check_deps_exist(self, root: Path) -> None:
        """Every dep is produced by a stage or exists on disk.

        Raises:
            ConfigError: naming each missing dep and the stage that needs it.
        """
        missing = []
        for name, spec in self.stages.items():
            for dep in spec.deps:
                if self.producers_of(dep) or dep in spec.input_paths:
                    continue  # written by a stage, or by mlcd before the stage (from_log)
                if not os.path.exists(dep if os.path.isabs(dep) else root / dep):
                    missing.append(f"stage '{name}' needs '{dep}', which does not exist")
        if missing:
            raise ConfigError(
                "; ".join(missing) + " and no stage produces it",
                hint="create the file, fix the path in mlcd.yaml, or 'mlcd pull' tracked data",
            )

    # ------------------------------------------------------------ selection
    def ancestors(self, name: str) -> set[str]:
        """Every stage ``name`` depends on, directly or not."""
        seen: set[str] = set()
        todo = list(self.upstream[name])
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.upstream[current])
        return seen

    def descendants(self, name: str) -> set[str]:
        """Every stage that depends on ``name``, directly or not."""
        seen: set[str] = set()
        todo = list(self.downstream[name])
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.downstream[current])
        return seen

    def select(self, targets: Iterable[str] = ()) -> list[str]:
        """The targets and everything they depend on, in run order (all stages if none).

        Raises:
            UsageError: a target that is not a stage.
        """
        targets = list(targets)
        if not targets:
            return list(self.order)
        unknown = [t for t in targets if t not in self.stages]
        if unknown:
            raise UsageError(
                f"no stage named {', '.join(repr(t) for t in unknown)}",
                hint=f"stages in mlcd.yaml: {', '.join(self.stages) or 'none'}",
            )
        wanted = set(targets)
        for target in targets:
            wanted |= self.ancestors(target)
        return [name for name in self.order if name in wanted]

    # ------------------------------------------------------------ rendering
    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [
                {
                    "name": name,
                    "cmd": self.stages[name].cmd,
                    "upstream": sorted(self.upstream[name]),
                    "outs": list(self.stages[name].produced),
                }
                for name in self.order
            ],
            "edges": [[up, name] for name in self.order for up in sorted(self.upstream[name])],
        }

    def to_mermaid(self) -> str:
        """A Mermaid flowchart (renders in GitHub Markdown)."""
        lines = ["flowchart TD"]
        ids = {name: f"s{index}" for index, name in enumerate(self.order)}
        for name in self.order:
            lines.append(f'  {ids[name]}["{name}"]')
        for name in self.order:
            for up in sorted(self.upstream[name], key=self.order.index):
                lines.append(f"  {ids[up]} --> {ids[name]}")
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """One line per stage in run order, with what it waits for."""
        width = max((len(n) for n in self.order), default=0)
        lines = []
        for name in self.order:
            ups = sorted(self.upstream[name], key=self.order.index)
            after = f"  <- {', '.join(ups)}" if ups else ""
            lines.append(f"{name.ljust(width)}{after}")
        return "\n".join(line.rstrip() for line in lines) + ("\n" if lines else "")
