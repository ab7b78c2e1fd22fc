"""Devices, once for every command line and timer: parsing a device flag, and waiting for
a device's queued work before reading a clock."""

import argparse

import torch


def device_name(text):
    """argparse type: 'cpu', 'cuda', 'cuda:N' or a GPU index N; returns a torch.device.

    A CUDA device asked for where CUDA is not available is refused here too, so that a
    command stops before any work.
    """
    name = f'cuda:{text}' if text.isdigit() else text
    try:
        device = torch.device(name)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"must be 'cpu', 'cuda', 'cuda:N' or a GPU index; got {text!r}"
        ) from None
    if device.type not in ('cpu', 'cuda'):
        raise argparse.ArgumentTypeError(f"must be 'cpu' or a CUDA device; got {text!r}")
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f'{text} asked for, but CUDA is not available here')
    return device


def add_device_flag(parser):
    """Add ``--device`` (:func:`device_name`, default the CPU) to ``parser``."""
    parser.add_argument(
        '--device',
        type=device_name,
        default=torch.device('cpu'),
        help="'cpu' (default), 'cuda', 'cuda:N' or a GPU index N",
    )


def synchronise(device):
    """Wait for the work queued on ``device`` (CUDA runs asynchronously; CPU does not)."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)
