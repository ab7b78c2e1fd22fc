"""Losses and metrics of the ODE experiments: ``fn(prediction, target) -> scalar tensor``."""

from torch import nn


def cross_entropy(logits, labels):
    """Mean cross-entropy of ``logits (N, classes)`` against integer ``labels (N,)``."""
    return nn.functional.cross_entropy(logits, labels)


def accuracy(logits, labels):
    """Percentage of ``labels`` that are the arg-max of ``logits``."""
    return (logits.argmax(dim=-1) == labels).float().mean() * 100.0


def mse(prediction, target):
    """Mean squared error over all entries."""
    return nn.functional.mse_loss(prediction, target)
