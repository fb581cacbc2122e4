"""The model registry. Names must match `ascl.config.MODELS` (the torch-free catalogue the API checks)."""

from ascl.models.wrapper import Backbone
from ascl.registry import Registry

MODELS: Registry[Backbone] = Registry("model")
