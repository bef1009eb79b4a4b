"""The kinds of layer torchdoctor reasons about, by class name: one list each, shared by the probes
(which measure them) and the rules (which judge them). Names, not classes, so rules stay torch-free."""

from __future__ import annotations

BATCH_NORM_TYPES = frozenset({
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d", "LazyBatchNorm2d",
    "LazyBatchNorm3d",
})
NORMALIZATION_TYPES = BATCH_NORM_TYPES | frozenset({
    "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LocalResponseNorm", "RMSNorm",
})
DROPOUT_TYPES = frozenset({"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"})
# Layers that compute differently in train() and eval(): forgetting model.eval() changes validation.
TRAIN_MODE_TYPES = DROPOUT_TYPES | BATCH_NORM_TYPES
EMBEDDING_TYPES = frozenset({"Embedding", "EmbeddingBag"})
SOFTMAX_TYPES = frozenset({"Softmax", "Softmax2d"})  # a model that ends in one outputs probabilities
CONTAINER_TYPES = frozenset({"Sequential", "ModuleList", "ModuleDict"})  # hold layers, compute nothing
# Activations whose derivative vanishes at both ends (vanishing_gradients names them as suspects).
SATURATING_ACTIVATIONS = frozenset({"Sigmoid", "Tanh", "Hardtanh", "Softsign", "Hardsigmoid", "LogSigmoid"})
# Activations whose outputs the probes sample: ReLUs for dead units, bounded ones for saturation,
# with the limits their outputs saturate at.
RELU_TYPES = ("ReLU", "ReLU6")
SATURATION_LIMITS = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0), "Hardtanh": (-1.0, 1.0)}
# Distances from a limit at which the share of pinned outputs is measured; saturated_activations'
# `limit_margin` picks one of them.
SATURATION_MARGINS = (0.001, 0.01, 0.05)
SATURATION_MARGIN = 0.01  # the default: sigmoid below 0.01 or above 0.99, tanh beyond ±0.99
