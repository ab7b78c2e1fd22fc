"""The Trainer: epochs of Adam steps, with timing, NFE counts, validation and a progress bar."""

import math
import random
import time

import numpy as np
import torch
from tqdm import tqdm

from common.devices import synchronise


class DivergenceError(Exception):
    """Training produced non-finite values (a loss, or a state the solver rejected)."""


class Trainer:
    """Trains ``model`` and records, per epoch, what docs/paper_notes.md §3 lists.

    Args:
        model: ``nn.Module`` called as ``model(*inputs)``.
        neural_de: the model's :class:`~models.neural_de.NeuralDE` (its ``nfe`` is read).
        optimiser: a ``torch.optim`` optimiser over the model's parameters.
        loss_fn, metric_fn: ``fn(prediction, target) -> scalar tensor``.
        train_loader: iterable of batches ``(*inputs, target)``.
        val_batches: list of batches ``(*inputs, target)``.
        device: ``torch.device``.
        quiet: bool, no progress bar.
    """

    def __init__(
        self,
        model,
        neural_de,
        optimiser,
        loss_fn,
        metric_fn,
        train_loader,
        val_batches,
        device,
        quiet=False,
    ):
        self.model, self.neural_de, self.optimiser = model, neural_de, optimiser
        self.loss_fn, self.metric_fn = loss_fn, metric_fn
        self.train_loader, self.val_batches = train_loader, val_batches
        self.device, self.quiet = device, quiet

    def _to_device(self, batch):
        return [part.to(self.device) for part in batch]

    def evaluate(self):
        """Validation (loss, metric), averaged over samples."""
        self.model.eval()
        total_loss = total_metric = count = 0.0
        with torch.no_grad():
            for batch in self.val_batches:
                *inputs, target = self._to_device(batch)
                prediction = self.model(*inputs)
                size = len(target)
                total_loss += self.loss_fn(prediction, target).item() * size
                total_metric += self.metric_fn(prediction, target).item() * size
                count += size
        self.model.train()
        return total_loss / count, total_metric / count

    def _step(self, batch, update=True):
        *inputs, target = self._to_device(batch)
        self.optimiser.zero_grad(set_to_none=True)
        self.neural_de.nfe = 0
        loss = self.loss_fn(self.model(*inputs), target)
        forward_nfe = self.neural_de.nfe
        loss.backward()
        backward_nfe = self.neural_de.nfe - forward_nfe
        if update:
            self.optimiser.step()
        return forward_nfe, backward_nfe

    def probe_nfe(self):
        """Forward and backward NFE of one training batch (epoch 0's figures).

        Nothing the run depends on changes: no parameter update, and the random
        generators (the loader's shuffle included) and the buffers (batch-norm running
        statistics) are restored afterwards, so training is the same with or without it.
        """
        generator = getattr(self.train_loader, 'generator', None)
        generator_state = None if generator is None else generator.get_state()
        states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        buffers = [(buffer, buffer.detach().clone()) for buffer in self.model.buffers()]
        forward_nfe, backward_nfe = self._step(next(iter(self.train_loader)), update=False)
        self.optimiser.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buffer, value in buffers:
                buffer.copy_(value)
        if generator is not None:
            generator.set_state(generator_state)
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        return float(forward_nfe), float(backward_nfe)

    def train_epoch(self):
        """One epoch; returns (training seconds, the process's CPU seconds meanwhile, mean
        forward NFE, mean backward NFE).

        Wall time is what a user waits; CPU time (every thread of the process) is what
        the steps cost, and moves less when other work shares the machine.
        """
        forward, backward, seconds, cpu_seconds = [], [], 0.0, 0.0
        for batch in self.train_loader:
            synchronise(self.device)
            start, cpu_start = time.perf_counter(), time.process_time()
            forward_nfe, backward_nfe = self._step(batch)
            synchronise(self.device)
            seconds += time.perf_counter() - start
            cpu_seconds += time.process_time() - cpu_start
            forward.append(forward_nfe)
            backward.append(backward_nfe)
        return (seconds, cpu_seconds, sum(forward) / len(forward), sum(backward) / len(backward))

    def fit(self, history, nepochs, on_epoch_end):
        """Train until ``nepochs`` epochs are recorded in ``history``.

        ``history`` holds the per-epoch lists (possibly resumed); epoch 0 is recorded
        first if absent. ``on_epoch_end(history)`` runs after each recorded epoch.
        """
        if not history['epochs']:
            loss, metric = self.evaluate()
            forward_nfe, backward_nfe = self.probe_nfe()
            _record(history, 0, (0.0, 0.0), loss, metric, forward_nfe, backward_nfe)
            on_epoch_end(history)
        first = history['epochs'][-1] + 1
        bar = tqdm(
            range(first, nepochs + 1),
            disable=self.quiet,
            desc='epochs',
            unit='epoch',
            initial=first - 1,
            total=nepochs,
            # The estimate of the time left averages every epoch of this process (later
            # epochs of a neural ODE often cost more), not the last few.
            smoothing=0,
        )
        for epoch in bar:
            try:
                *seconds, forward_nfe, backward_nfe = self.train_epoch()
                loss, metric = self.evaluate()
            except (AssertionError, FloatingPointError, RuntimeError) as error:
                # torchdiffeq asserts on non-finite states and vanishing steps; torch
                # refuses values that overflow a float.
                if not isinstance(error, FloatingPointError) and not any(
                    words in str(error) for words in ('non-finite', 'underflow', 'overflow')
                ):
                    raise
                raise DivergenceError(f'training diverged in epoch {epoch} ({error})') from error
            if not (math.isfinite(loss) and math.isfinite(metric)):
                raise DivergenceError(
                    f'training diverged in epoch {epoch} (validation loss {loss}, metric {metric})'
                )
            _record(history, epoch, seconds, loss, metric, forward_nfe, backward_nfe)
            bar.set_postfix(
                val_loss=f'{loss:.4g}',
                val_metric=f'{metric:.4g}',
                fnfe=f'{forward_nfe:.0f}',
                bnfe=f'{backward_nfe:.0f}',
            )
            on_epoch_end(history)
        return history


def _record(history, epoch, seconds, loss, metric, forward_nfe, backward_nfe):
    """Append one epoch; ``seconds`` is (wall, CPU) seconds of its training steps."""
    history['epochs'].append(epoch)
    history['epoch_times'].append(seconds[0])
    # A history resumed from a run that predates CPU times has none to extend.
    if 'epoch_cpu_times' in history:
        history['epoch_cpu_times'].append(seconds[1])
    history['epoch_loss_history'].append(loss)
    history['epoch_val_metric_history'].append(metric)
    history['epoch_fnfe_history'].append(forward_nfe)
    history['epoch_bnfe_history'].append(backward_nfe)
