"""Losses and metrics of the ODE experiments: ``fn(prediction, target) -> scalar tensor``."""

import torch
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


#: Added to every variance of the Gaussian fits: all paths share x(0), so the fitted
#: variance is 0 at t = 0 and tiny just after it.
VARIANCE_FLOOR = 1e-4


def _gaussian_fit(paths):
    """Mean and variance over sample paths: ``paths (B, T, P)`` -> two ``(B, T)``, t = 0 dropped."""
    paths = paths[:, 1:]
    return paths.mean(dim=-1), paths.var(dim=-1, unbiased=False) + VARIANCE_FLOOR


def gaussian_kl(predicted, data):
    """Mean over initial conditions and times of KL(N(pred) ‖ N(data)) between per-time
    Gaussian fits of predicted and data paths, both ``(B, T, P)``."""
    mean_p, var_p = _gaussian_fit(predicted)
    mean_d, var_d = _gaussian_fit(data)
    kl = 0.5 * (torch.log(var_d / var_p) + (var_p + (mean_p - mean_d) ** 2) / var_d - 1.0)
    return kl.mean()


def gaussian_log_likelihood(predicted, data):
    """Mean log-likelihood of the data paths under the predicted per-time Gaussians."""
    mean_p, var_p = _gaussian_fit(predicted)
    points = data[:, 1:]
    log_density = -0.5 * (
        torch.log(2 * torch.pi * var_p[..., None])
        + (points - mean_p[..., None]) ** 2 / var_p[..., None]
    )
    return log_density.mean()
