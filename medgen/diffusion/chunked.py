"""Chunked network calls whose graph is rebuilt one chunk at a time: bounded memory for DPS, and sharding.

A diffusion network acts on each item of its batch independently (TPDM's slices, PaDIS' patches, SDM's slabs), so
``f(x)`` over a large batch is the concatenation of ``f`` over chunks of it. :func:`chunked_map` evaluates it that
way and, when ``x`` requires grad, as a chunked vector-Jacobian product:

1. forward: every chunk WITHOUT a graph (the outputs only);
2. the caller's loss is differentiated down to the outputs (e.g. DPS: ``d ||A x0_hat - y|| / d x0_hat``, no network);
3. backward: each chunk is recomputed WITH its graph and ``torch.autograd.grad(f(x_chunk), x_chunk, grad_chunk)``
   backpropagates that chunk's share of the output gradient; the graph is freed before the next chunk.

The peak memory of a gradient through the network is then one chunk's graph plus batch-sized tensors, whatever the
batch (PaDIS' 512^2 canvas vs 256^2: ``benchmarks/bench_memory.py``); the result equals the unchunked graph's to
float rounding (the network runs twice per chunk instead of once: the price of the memory bound). Only ``x`` gets a
gradient; the other per-item inputs (noise levels, positions, conditions) are constants, and the network must be
deterministic (eval mode, no dropout) so that the recomputation reproduces the forward.

With a :class:`~medgen.distributed.Sharding` of several ranks, each rank evaluates (and backpropagates) only its
share of the chunks and all-gathers the rest, so every rank holds the full output and the full input gradient.

:class:`ChunkedNetwork` applies :func:`chunked_map` to every call of a network; an inferer's ``network_batch_size``
and ``shard`` options wrap its network in it (:func:`with_chunking`).

Example (the chunked gradient equals the plain one)::

    import torch
    from medgen.diffusion.chunked import chunked_map

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 1, 3, padding=1))
    x = torch.randn(16, 1, 8, 8, requires_grad=True)
    (plain,) = torch.autograd.grad(net(x).square().sum(), x)
    (chunked,) = torch.autograd.grad(chunked_map(net, x, chunk_size=4).square().sum(), x)
    torch.testing.assert_close(chunked, plain)
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from medgen.checks import check_callable, check_int
from medgen.distributed import Sharding, as_sharding
from medgen.networks.precision import wrap_each_network

__all__ = ["chunked_map", "ChunkedNetwork", "with_chunking", "SavedTensorMeter"]


def _chunks(share: slice, chunk_size: int | None) -> list[slice]:
    """``share`` cut into consecutive slices of at most ``chunk_size`` items (one slice when ``None``)."""
    step = chunk_size or max(share.stop - share.start, 1)
    return [slice(i, min(i + step, share.stop)) for i in range(share.start, share.stop, step)]


class _ChunkedMap(torch.autograd.Function):
    """``function`` over the chunks of ``x``: forward without a graph, backward recomputing one chunk at a time."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        function: Callable[..., torch.Tensor],
        chunk_size: int | None,
        sharding: Sharding,
        x: torch.Tensor,
        *items: torch.Tensor,
    ) -> torch.Tensor:
        ctx.function, ctx.chunk_size, ctx.sharding = function, chunk_size, sharding
        ctx.save_for_backward(x, *items)
        return _evaluate(function, chunk_size, sharding, x, items)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, *items = ctx.saved_tensors
        count = x.shape[0]
        grads = []
        for rows in _chunks(ctx.sharding.share(count), ctx.chunk_size):
            with torch.enable_grad():
                x_chunk = x[rows].detach().requires_grad_(True)
                out = ctx.function(x_chunk, *(item[rows] for item in items))
                (grad,) = torch.autograd.grad(out, x_chunk, grad_output[rows], allow_unused=True)
            grads.append(torch.zeros_like(x_chunk) if grad is None else grad)
        local = torch.cat(grads) if grads else x.new_zeros((0, *x.shape[1:]))
        return (None, None, None, ctx.sharding.all_gather(local, count), *(None for _ in items))


def _evaluate(
    function: Callable[..., torch.Tensor],
    chunk_size: int | None,
    sharding: Sharding,
    x: torch.Tensor,
    items: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """The outputs of this rank's chunks, all-gathered over the ranks."""
    count = x.shape[0]
    outputs = [function(x[rows], *(item[rows] for item in items)) for rows in _chunks(sharding.share(count), chunk_size)]
    if not outputs:  # a rank without items (more ranks than items): an empty share of the output's shape
        probe = function(x[:1], *(item[:1] for item in items))
        outputs = [probe[:0]]
    local = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    return sharding.all_gather(local, count)


def chunked_map(
    function: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *items: torch.Tensor,
    chunk_size: int | None = None,
    sharding: Sharding | None = None,
) -> torch.Tensor:
    """``function(x, *items)`` of an item-wise ``function``, evaluated in chunks of the first dimension.

    Without a graph (``x`` does not require grad, or grad mode is off) the chunks are evaluated and concatenated.
    With one, the chunked vector-Jacobian product of the module docstring keeps one chunk's graph at a time.
    Without ``chunk_size`` and sharding, this is ``function(x, *items)`` (the full graph).

    Args:
        function: ``function(x_chunk, *item_chunks) -> (n, ...)``, each output item depending only on its input items.
        x: the batch ``(N, ...)``, the only differentiable input.
        items: further per-item inputs ``(N, ...)``, cut like ``x`` (not differentiated).
        chunk_size: items per call (``None``: all of this rank's share in one call).
        sharding: ranks sharing the items (``None``: this process evaluates all of them).

    Returns:
        ``(N, ...)``, the outputs of all items (on every rank).

    Raises:
        TypeError: ``x`` or an item is not a tensor.
        ValueError: an item's first dimension is not ``N``; a ``chunk_size`` < 1.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}.")
    for i, item in enumerate(items):
        if not isinstance(item, torch.Tensor) or item.ndim == 0 or item.shape[0] != x.shape[0]:
            shape = tuple(item.shape) if isinstance(item, torch.Tensor) else type(item).__name__
            raise ValueError(f"items[{i}] must be a tensor of {x.shape[0]} items like x, got {shape}.")
    check_int(chunk_size, "chunk_size", 1, allow_none=True)
    sharding = sharding if sharding is not None else Sharding(None)
    if chunk_size is None and not sharding.active:
        return function(x, *items)
    if torch.is_grad_enabled() and x.requires_grad:
        return _ChunkedMap.apply(function, chunk_size, sharding, x, *items)
    return _evaluate(function, chunk_size, sharding, x, items)


class ChunkedNetwork(nn.Module):
    """A network whose every call is a :func:`chunked_map` over its batch (bounded-memory DPS, sharded inference).

    ``network(x, *args, **kwargs)`` is called on chunks of ``x``: tensor arguments whose first dimension equals
    ``x``'s (a per-item noise level ``(B,)``, timesteps, conditions, positions) are cut with it, all others (a float
    ``sigma``, a shared tensor) are passed whole. Attributes are those of the wrapped network
    (:func:`~medgen.networks.checkpoint.unwrap_network` unwraps this class).

    Args:
        network: an item-wise network ``network(x, *args, **kwargs)``.
        chunk_size: items per network call, and per recomputed graph (``None``: the rank's share in one call).
        shard: ranks sharing each call's items: see :func:`~medgen.distributed.as_sharding`.
    """

    unwraps_to_module = True

    def __init__(self, network: Callable[..., torch.Tensor], chunk_size: int | None = None, shard: Any = None) -> None:
        super().__init__()
        check_callable(network, "network")
        check_int(chunk_size, "chunk_size", 1, allow_none=True)
        if isinstance(network, nn.Module):
            self.module = network
        else:
            object.__setattr__(self, "module", network)  # a plain callable: not registered as a submodule
        self.chunk_size = chunk_size
        self.sharding = as_sharding(shard)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``network(x, *args, **kwargs)`` through :func:`chunked_map`."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the network's first input must be a tensor, got {type(x).__name__}.")
        count = x.shape[0]
        per_item = [
            isinstance(a, torch.Tensor) and a.ndim > 0 and a.shape[0] == count for a in (*args, *kwargs.values())
        ]
        values = [*args, *kwargs.values()]
        items = [v for v, split in zip(values, per_item) if split]
        keys = list(kwargs)

        def call(x_chunk: torch.Tensor, *item_chunks: torch.Tensor) -> torch.Tensor:
            chunks = iter(item_chunks)
            merged = [next(chunks) if split else v for v, split in zip(values, per_item)]
            return self.module(x_chunk, *merged[: len(args)], **dict(zip(keys, merged[len(args) :])))

        return chunked_map(call, x, *items, chunk_size=self.chunk_size, sharding=self.sharding)

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}, world_size={self.sharding.world_size}"


def with_chunking(network: Any, chunk_size: int | None, shard: Any) -> Any:
    """What an inferer receives as ``network``, each network wrapped in :class:`ChunkedNetwork`.

    One network, a ``(primary, auxiliary)`` tuple/list/``nn.ModuleList`` or an ``nn.ModuleDict`` (TPDM) are wrapped
    member by member; without ``chunk_size`` and an active sharding ``network`` is returned unchanged.

    Raises:
        TypeError: ``network`` is a medgen ``Prior`` (it owns its network calls: build it on a
            :class:`ChunkedNetwork` instead).
    """
    sharding = as_sharding(shard)
    if chunk_size is None and not sharding.active:
        return network
    return wrap_each_network(
        network,
        lambda member: ChunkedNetwork(member, chunk_size, sharding),
        ChunkedNetwork,
        "network_batch_size/shard",
        "medgen.diffusion.chunked.ChunkedNetwork(network, chunk_size, shard)",
    )


class _Saved:
    """A tensor held by an autograd graph (what :class:`SavedTensorMeter`'s pack hook returns)."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class SavedTensorMeter:
    """Bytes that autograd graphs hold for their backward, live and at peak (a deterministic graph-memory measure).

    Within the ``with`` block every tensor a graph saves goes through
    :class:`torch.autograd.graph.saved_tensors_hooks`; a storage counts once while any graph holds it (its full
    ``nbytes``, so views count what they keep alive) and is released when the last graph holding it is freed.
    :attr:`peak_bytes` is the largest total at any moment: the memory of the largest set of live graphs, independent
    of the allocator, the thread count and timing.

    Example::

        import torch
        from medgen.diffusion.chunked import SavedTensorMeter

        x = torch.randn(1000, requires_grad=True)
        with SavedTensorMeter() as meter:
            (x.exp() * 2).sum().backward()
        meter.peak_bytes          # 4000: exp saved its output, freed by the backward
    """

    def __init__(self) -> None:
        self.peak_bytes = 0
        self.live_bytes = 0
        self._holders: dict[tuple[int, str], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: torch.Tensor) -> _Saved:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), str(tensor.device))
        if key not in self._holders:
            self._holders[key] = 0
            self.live_bytes += storage.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self._holders[key] += 1
        saved = _Saved(tensor.detach())  # detached: a saved output must not hold its own graph (a cycle)
        weakref.finalize(saved, self._release, key, storage.nbytes())
        return saved

    @staticmethod
    def _unpack(saved: _Saved) -> torch.Tensor:
        return saved.tensor

    def _release(self, key: tuple[int, str], nbytes: int) -> None:
        self._holders[key] -= 1
        if not self._holders[key]:
            del self._holders[key]
            self.live_bytes -= nbytes
