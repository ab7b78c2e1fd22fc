"""Multi-process training: ``odeint_adjoint_gq`` inside a model wrapped in
``DistributedDataParallel`` gives, after the all-reduce, the gradient of one process
training on the whole batch, for every backward pass (two CPU processes, gloo)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from torch_gq_adjoint import odeint_adjoint_gq
from torch_gq_adjoint._impl.choice import BACKWARDS

# Calls repeat at one line here: the passes 'auto' takes must not depend on timings.
pytestmark = pytest.mark.usefixtures('estimate_planning')

WORLD = 2


class _Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, t, z):
        return self.net(z)


class _Model(nn.Module):
    """What DDP wraps: the model that calls the solver (not ``func`` alone)."""

    def __init__(self, backward):
        super().__init__()
        torch.manual_seed(0)
        self.func = _Field().double()
        self.backward = backward

    def forward(self, y0):
        t = torch.linspace(0, 1, 5, dtype=torch.float64)
        return odeint_adjoint_gq(self.func, y0, t, rtol=1e-8, atol=1e-8, backward=self.backward)


def _data():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 2, generator=generator, dtype=torch.float64)


def _loss(solution):
    return (solution**2).mean()


def _worker(rank, port, folder):
    # The loopback interface: gloo would otherwise pick the host's first interface.
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), GLOO_SOCKET_IFNAME='lo')
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=WORLD)
    try:
        shard = _data().chunk(WORLD)[rank]
        for backward in BACKWARDS:
            model = nn.parallel.DistributedDataParallel(_Model(backward))
            _loss(model(shard)).backward()
            grads = [param.grad.clone() for param in model.parameters()]
            if rank == 0:
                torch.save(grads, os.path.join(folder, f'{backward}.pt'))
        # Both ranks done before either tears the group down.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.fixture(scope='module')
def distributed_grads(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ddp')
    mp.spawn(_worker, args=(_free_port(), str(folder)), nprocs=WORLD, join=True)
    return {
        backward: torch.load(folder / f'{backward}.pt', weights_only=True) for backward in BACKWARDS
    }


@pytest.mark.parametrize('backward', BACKWARDS)
def test_ddp_gradient_is_the_single_process_gradient(distributed_grads, backward):
    # One process, the same shards solved and differentiated apart (so with the same
    # steps, forward and backward) and their gradients averaged, as the all-reduce does:
    # equal to rounding. (Scaling a loss before its backward pass would change the
    # adaptive backward solve's steps, whose atol is absolute.)
    sharded = _Model(backward)
    shard_grads = []
    for shard in _data().chunk(WORLD):
        shard_grads.append(torch.autograd.grad(_loss(sharded(shard)), list(sharded.parameters())))
    for param, *grads in zip(sharded.parameters(), *shard_grads):
        param.grad = sum(grads) / WORLD
    # One process, the whole batch in one solve: its adaptive steps differ from the
    # shards', so the gradients agree to the solver's tolerance.
    whole = _Model(backward)
    _loss(whole(_data())).backward()
    for found, same, joint in zip(
        distributed_grads[backward], sharded.parameters(), whole.parameters()
    ):
        assert found.abs().max() > 0
        assert torch.allclose(found, same.grad, rtol=1e-10, atol=1e-14), backward
        assert torch.allclose(found, joint.grad, rtol=1e-5, atol=1e-8), backward
