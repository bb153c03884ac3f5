"""What a policy needs to act: the project's configuration, root and stores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlcd.config import Config, Model, Policy
from mlcd.errors import ConfigError
from mlcd.objects import ObjectStore
from mlcd.store import Store


@dataclass
class Context:
    """The ready-made parts a retrain or a watch pass works on (built by the CLI)."""

    root: Path
    config: Config
    store: Store
    objects: ObjectStore

    def policy(self, model: str) -> Policy:
        """The retrain policy of ``model`` (the defaults if ``retrain:`` does not name it)."""
        self.model(model)
        return self.config.retrain.get(model, Policy())

    def model(self, model: str) -> Model:
        """The ``models.<model>`` section.

        Raises:
            ConfigError: the model is not declared.
        """
        try:
            return self.config.models[model]
        except KeyError:
            raise ConfigError(
                f"no model '{model}' under models: in mlcd.yaml "
                f"(declared: {', '.join(self.config.models) or 'none'})",
                hint="declare it with the stage out that holds its package",
            ) from None
