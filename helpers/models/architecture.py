"""Inspecting Keras models: parameters per layer type, heads, feature maps.

Introduced in notebook 01.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import keras

__all__ = ["LAYER_GROUPS", "layer_group", "iter_layers", "parameter_breakdown", "ParameterBreakdown"]

#: Order of the groups in tables and plots.
LAYER_GROUPS = ("conv", "dense", "batch_norm", "other")


def layer_group(layer: keras.layers.Layer) -> str:
    """Group of a layer for parameter accounting: conv, dense, batch_norm or other."""
    conv_types = (
        keras.layers.Conv1D,
        keras.layers.Conv2D,
        keras.layers.Conv3D,
        keras.layers.DepthwiseConv2D,
        keras.layers.SeparableConv2D,
        keras.layers.Conv2DTranspose,
    )
    if isinstance(layer, conv_types):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "batch_norm"
    return "other"


def iter_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Yield the leaf layers of ``model``, descending into nested models (e.g. a base in a
    ``Sequential``)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


@dataclass(frozen=True)
class ParameterBreakdown:
    """Parameter counts of a model by layer group.

    Attributes
    ----------
    total
        All parameters (trainable and not, e.g. BatchNorm moving statistics), as ``count_params``.
    by_group
        Group (``LAYER_GROUPS``) -> parameters.
    layers
        ``(layer name, layer type, group, parameters)`` for every leaf layer that has parameters.
    """

    total: int
    by_group: dict[str, int]
    layers: tuple[tuple[str, str, str, int], ...]

    def share(self, group: str) -> float:
        """Fraction of all parameters that sit in ``group`` (one of :data:`LAYER_GROUPS`)."""
        if group not in self.by_group:
            raise ValueError(f"unknown layer group {group!r}; the groups are {LAYER_GROUPS}")
        return self.by_group[group] / self.total if self.total else 0.0


def parameter_breakdown(model: keras.Model) -> ParameterBreakdown:
    """Count a model's parameters per layer group (conv, dense, batch_norm, other)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise ValueError(
            f"model {model.name!r} is not built, so its layers have no weights yet to count: "
            "give it an input shape (keras.Input(...) as its first layer) or call it once on data")
    by_group = dict.fromkeys(LAYER_GROUPS, 0)
    rows = []
    for layer in iter_layers(model):
        count = int(layer.count_params()) if layer.built else 0
        if count == 0:
            continue
        group = layer_group(layer)
        by_group[group] += count
        rows.append((layer.name, type(layer).__name__, group, count))
    total = int(model.count_params())
    if sum(by_group.values()) != total:
        raise RuntimeError(
            f"per-layer counts add up to {sum(by_group.values())}, model says {total}; "
            "a layer holds weights this breakdown does not see"
        )
    return ParameterBreakdown(total=total, by_group=by_group, layers=tuple(rows))
