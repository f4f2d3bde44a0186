"""What every medgen sampling inferer shares (:class:`SamplingInferer`: seeding, the sampling loop, MetaTensor output,
argument checks) and what the WDM and SDM inferers share (:class:`DiffusionSamplingInferer`: the discrete process).

**Gradients.** Inferers whose data consistency needs autograd (DPS) get it the same way everywhere: sampling runs
with ``torch.inference_mode`` switched off and each step that needs a graph under ``torch.enable_grad()``, so a call
from MONAI's ``no_grad`` evaluators, from ``torch.no_grad()`` or from ``torch.inference_mode()`` works; input tensors
created under inference mode are copied out of it first (:meth:`SamplingInferer.plain`). Steps without DPS run under
``torch.no_grad()``. A call therefore gives the same result under ``torch.no_grad()``, ``torch.inference_mode()`` or
neither (tested for every inferer that differentiates, in ``tests/inferers/test_gradient_rule.py``).

**Bad input.** Every tensor given to a call (``inputs``, tensor arguments such as ``mask`` or ``sensitivity_maps``)
must be finite: a NaN or infinite entry is refused with a ``ValueError`` naming it before any step is taken.

**Network wrappers.** ``autocast_dtype`` and ``compile_network`` wrap the network of each call in
:class:`~medgen.networks.precision.PrecisionNetwork`, then ``network_batch_size`` and ``shard`` in
:class:`~medgen.diffusion.chunked.ChunkedNetwork` (so a recomputed chunk runs under the same autocast); the latter two
change the result only by float rounding and are not part of the resume fingerprint.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from medgen.checks import check_choice, check_finite, check_int, settings_with
from medgen.diffusion.chunked import with_chunking
from medgen.diffusion.gaussian import GaussianDiffusion, diffusion_fingerprint, respace_diffusion
from medgen.diffusion.loop import SamplingLoop, make_generator, to_json
from medgen.diffusion.samplers import DISCRETE_SAMPLERS, discrete_step
from medgen.diffusion.warm_start import WarmStart
from medgen.networks.checkpoint import network_parameter
from medgen.distributed import as_sharding
from medgen.networks.precision import PrecisionSettings, with_precision

__all__ = ["SamplingInferer", "DiffusionSamplingInferer", "DIFFUSION_SAMPLERS", "SAMPLING_OPTIONS",
           "WARM_START_OPTIONS"]

DIFFUSION_SAMPLERS = DISCRETE_SAMPLERS
SAMPLING_OPTIONS = ("seed", "progress", "checkpoint_dir", "checkpoint_every", "autocast_dtype", "compile_network",
                    "network_batch_size", "shard")
"""The keywords every inferer takes and hands to :class:`SamplingInferer` (documented there)."""
WARM_START_OPTIONS = ("warm_start", "warm_start_sigma", "warm_start_step", "warm_start_settings")
"""The keywords of the inferers with ``warm_starts = True`` (documented in :class:`SamplingInferer`)."""


# ---------------------------------------------------------------------------------------------- base classes
class SamplingInferer(Inferer):
    """Base of medgen's diffusion inferers: a :class:`monai.inferers.Inferer` whose ``__call__`` runs a sampler.

    Subclasses implement :meth:`sample` (what ``__call__(inputs, network, *args, **kwargs)`` runs, with inference mode
    off: see the module docstring), validate everything before sampling, and use:

    - :meth:`generator` for all their random draws (seeded, on the inputs' device),
    - :meth:`sampling_loop` to run their steps with progress and checkpoint/resume (its fingerprint makes a resumed
      run the same run),
    - :meth:`wrap_output` to return a :class:`monai.data.MetaTensor` carrying the input's affine and meta.

    A subclass takes these keywords in its own ``**settings`` and hands them over with :meth:`options`, so they are
    documented here only ("Other keywords: see SamplingInferer").

    Args:
        seed: seed of the sampler's generator; ``None`` draws from the global RNG (not resumable bit-exactly on
            CUDA).
        progress: show a progress bar.
        checkpoint_dir: folder for the sampling state; with it, an interrupted run resumes where it stopped.
        checkpoint_every: save every this many steps (``0``: only at the end).
        autocast_dtype: ``None``, ``torch.bfloat16`` or ``torch.float16`` (or the names): only the network runs under
            ``torch.autocast`` of the inputs' device type, its outputs return in the state's dtype, so data
            consistency and the operators keep their precision (:class:`~medgen.networks.precision.
            PrecisionSettings`; an unsupported dtype/device pair is refused before sampling).
        compile_network: ``False``, ``True`` or a ``torch.compile`` mode (``"reduce-overhead"``: CUDA graphs):
            ``torch.compile`` of the network, compiled once per network object.
        network_batch_size: items per network call (slices, patches, slabs), and per recomputed graph when a
            gradient flows through the network (DPS): its memory is one chunk's graph whatever the batch, at the cost
            of a second forward (:mod:`medgen.diffusion.chunked`); ``None``: the calls as the sampler makes them.
        shard: split each network call's items across the ranks of a ``torch.distributed`` process group and
            all-gather the outputs (:mod:`medgen.distributed`; launched with ``torchrun``, the same inputs and seed
            on every rank, every rank returns the full result): ``False``, ``True`` (the default group when it is
            initialised), or a process group.
        warm_start: inferers with ``warm_starts = True`` only: start the reverse diffusion from a noised estimate
            (:class:`~medgen.diffusion.warm_start.WarmStart`): ``None`` (cold), a classical method name (solved
            reference-free on the call's measurement) or a tensor in the inferer's image layout (see each inferer).
        warm_start_sigma, warm_start_step: where the warm start begins: the first step whose noise level is at most
            ``warm_start_sigma``, or step ``warm_start_step`` (``0``: the cold path).
        warm_start_settings: settings of the named classical method.

    Raises:
        TypeError: ``seed`` is not an int or ``None``; a warm-start keyword for an inferer without warm start.
        ValueError: ``checkpoint_every`` is negative, or positive without ``checkpoint_dir``; an unknown
            ``autocast_dtype`` or ``compile_network``.
    """

    warm_starts: bool = False
    """Whether the subclass takes the warm-start keywords (it then uses ``self.warm_start``)."""
    settings: Any = None
    """The subclass's frozen settings dataclass (part of :meth:`config`), ``None`` without one."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        autocast_dtype: torch.dtype | str | None = None,
        compile_network: bool | str = False,
        network_batch_size: int | None = None,
        shard: Any = False,
        warm_start: str | torch.Tensor | None = None,
        warm_start_sigma: float | None = None,
        warm_start_step: int | None = None,
        warm_start_settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        warm = (warm_start, warm_start_sigma, warm_start_step, warm_start_settings)
        given = [name for name, value in zip(WARM_START_OPTIONS, warm) if value is not None]
        if given and not self.warm_starts:
            raise TypeError(f"{type(self).__name__} has no warm start, got {given[0]}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}.")
        check_int(checkpoint_every, "checkpoint_every", 0)
        if checkpoint_every and checkpoint_dir is None:
            raise ValueError(f"checkpoint_every={checkpoint_every} requires checkpoint_dir, got None.")
        self.seed = seed
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.precision = PrecisionSettings(autocast_dtype, compile_network)
        check_int(network_batch_size, "network_batch_size", 1, allow_none=True)
        as_sharding(shard)  # validates the option now; the process group is read at each call
        self.network_batch_size = network_batch_size
        self.shard = shard
        self.warm_start = WarmStart(warm_start, warm_start_sigma, warm_start_step, dict(warm_start_settings or {}))

    @classmethod
    def options(cls, keywords: dict[str, Any]) -> dict[str, Any]:
        """Pop this class's :data:`SAMPLING_OPTIONS` (and, with ``warm_starts``, :data:`WARM_START_OPTIONS`) out of a
        subclass's keywords, for ``super().__init__(**options)``; what remains are the subclass's own settings."""
        names = SAMPLING_OPTIONS + (WARM_START_OPTIONS if cls.warm_starts else ())
        return {name: keywords.pop(name) for name in names if name in keywords}

    def __call__(self, inputs: Any, network: Any, *args: Any, **kwargs: Any) -> MetaTensor:  # type: ignore[override]
        """Run :meth:`sample` with ``torch.inference_mode`` off (the gradient rule of the module docstring) on the
        network wrapped by the precision settings (checked against the inputs' or the network's device first).

        Raises:
            ValueError: ``inputs`` or a tensor argument holds NaN or infinite values (before any step is taken).
        """
        given = {"inputs": inputs, **{f"args[{i}]": a for i, a in enumerate(args)}, **kwargs}
        for name, value in given.items():
            if isinstance(value, torch.Tensor):
                check_finite(value, name)
        if self.precision.active:
            parameter = network_parameter(network)
            device = inputs.device if isinstance(inputs, torch.Tensor) else kwargs.get("device")
            device = device or (parameter.device if parameter is not None else "cpu")
            self.precision.check_device(device)
            network = with_precision(network, self.precision)
        sharding = as_sharding(self.shard)
        if sharding.active and self.checkpoint_dir is not None:
            raise ValueError(
                f"checkpoint_dir={str(self.checkpoint_dir)!r} with shard over {sharding.world_size} ranks: every rank "
                "would write the same checkpoint; give checkpoint_dir to a single-process run only."
            )
        network = with_chunking(network, self.network_batch_size, sharding)
        with torch.inference_mode(False):
            return self.sample(inputs, network, *args, **kwargs)

    @abstractmethod
    def sample(self, inputs: Any, network: Any, *args: Any, **kwargs: Any) -> MetaTensor:
        """The inferer's sampler."""

    @staticmethod
    def plain(t: torch.Tensor) -> torch.Tensor:
        """``t`` as a plain tensor (meta dropped) that autograd can use: inference-mode tensors are copied."""
        plain = t.as_tensor() if isinstance(t, MetaTensor) else t
        return plain.clone() if plain.is_inference() else plain.detach()

    def config(self) -> dict[str, Any]:
        """Settings that change the result (subclasses extend it; dataclasses allowed): the run fingerprint's
        ``config`` entry, made JSON by :func:`to_json`; the precision and warm-start settings only when they are
        active, so that the fingerprints of full-precision cold runs stay as they were)."""
        config: dict[str, Any] = {"seed": self.seed}
        if self.settings is not None:
            config["settings"] = self.settings
        if self.precision.active:
            config["precision"] = self.precision.to_json()
        if self.warm_start.active:
            config["warm_start"] = self.warm_start.to_json()
        return config

    def generator(self, device: torch.device | str) -> torch.Generator | None:
        """A fresh generator seeded with ``seed`` on ``device`` (``None`` when ``seed`` is ``None``)."""
        return make_generator(self.seed, device)

    def sampling_loop(
        self, num_steps: int, input_shape: Sequence[int] | torch.Size, extra: Mapping[str, Any] | None = None
    ) -> SamplingLoop:
        """The :class:`SamplingLoop` for one call, fingerprinted by class, config, input shape and ``extra``.

        Args:
            num_steps: number of loop steps.
            input_shape: shape of the call's input (part of the fingerprint).
            extra: further JSON-serialisable fingerprint entries; tensors (and ``None``) are replaced by their
                :func:`tensor_digest`, so pass the measurement/condition tensors themselves.
        """
        fingerprint = {
            "inferer": type(self).__name__,
            "config": to_json(self.config()),
            "input_shape": [int(s) for s in input_shape],
            **to_json(dict(extra or {})),
        }
        return SamplingLoop(
            num_steps,
            progress=self.progress,
            description=type(self).__name__,
            checkpoint_dir=self.checkpoint_dir,
            checkpoint_every=self.checkpoint_every,
            fingerprint=fingerprint,
        )

    @staticmethod
    def wrap_output(result: torch.Tensor, like: torch.Tensor | None) -> MetaTensor:
        """``result`` as a :class:`MetaTensor` with the affine and meta of ``like`` (when ``like`` is one)."""
        result = result.detach()
        if isinstance(like, MetaTensor):
            output = MetaTensor(result.as_tensor() if isinstance(result, MetaTensor) else result, meta=dict(like.meta))
            output.is_batch = like.is_batch
            return output
        if isinstance(result, MetaTensor):
            return result
        return MetaTensor(result)


class DiffusionSamplingInferer(SamplingInferer):
    """A :class:`SamplingInferer` that samples a discrete :class:`~medgen.diffusion.gaussian.GaussianDiffusion`.

    Holds the (respaced) process and the step rule shared by WDM (:class:`~medgen.inferers.wavelet.
    WaveletDiffusionInferer`) and SDM (:class:`~medgen.inferers.slab.SemanticDiffusionInferer`): ancestral DDPM
    (``p_sample``: network call first, then the noise draw, as guided-diffusion) or DDIM.

    Args:
        diffusion: the original process (e.g. 1000 steps); ``None``: the subclass's :meth:`default_diffusion`.
        timestep_respacing: steps actually sampled: ``None`` (all, official), an int ``N`` (``N`` evenly spaced
            steps), or guided-diffusion's section string (``"ddim50"``, ``"10,15,20"``; see
            :func:`~medgen.diffusion.gaussian.space_timesteps` and :func:`respace_diffusion`).
        sampler: ``"ddpm"`` (ancestral, official) or ``"ddim"``.
        eta: DDIM's noise scale (``0`` deterministic, ``1`` DDPM-like); only with ``sampler="ddim"``.
        settings: fields of the subclass's :attr:`settings_type`, and the keywords of :class:`SamplingInferer`.

    Raises:
        TypeError: ``diffusion`` is not a ``GaussianDiffusion``; bad ``timestep_respacing`` type; an unknown keyword.
        ValueError: unknown ``sampler``, negative ``eta`` or ``eta`` without DDIM, respacing that does not fit.
    """

    settings_type: type | None = None
    """The frozen settings dataclass whose fields the remaining keywords set (:func:`~medgen.checks.settings_with`)."""

    def __init__(
        self,
        diffusion: GaussianDiffusion | None = None,
        timestep_respacing: int | str | Sequence[int] | None = None,
        sampler: str = "ddpm",
        eta: float = 0.0,
        **settings: Any,
    ) -> None:
        super().__init__(**self.options(settings))
        diffusion = self.default_diffusion() if diffusion is None else diffusion
        if not isinstance(diffusion, GaussianDiffusion):
            raise TypeError(f"diffusion must be a GaussianDiffusion or None, got {type(diffusion).__name__}.")
        check_choice(sampler, "sampler", DIFFUSION_SAMPLERS)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0:
            raise ValueError(f"eta must be a number >= 0, got {eta!r}.")
        if eta and sampler != "ddim":
            raise ValueError(f"eta={eta} only applies to sampler='ddim', got sampler={sampler!r}.")
        self.diffusion = respace_diffusion(diffusion, timestep_respacing)
        self.timestep_respacing = timestep_respacing
        self.sampler = sampler
        self.eta = float(eta)
        if self.settings_type is None and settings:
            raise TypeError(f"{type(self).__name__} got an unexpected keyword argument {sorted(settings)[0]!r}.")
        if self.settings_type is not None:
            self.settings = settings_with(self.settings_type(), settings, type(self).__name__)

    @staticmethod
    def default_diffusion() -> GaussianDiffusion:
        """The process of ``diffusion=None``: the subclass's paper's (none here)."""
        raise TypeError("diffusion must be a GaussianDiffusion, got None.")

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "diffusion": diffusion_fingerprint(self.diffusion),
            "sampler": self.sampler,
            "eta": self.eta,
        }

    def step(
        self,
        model: Any,
        x: torch.Tensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        """One reverse step of the configured sampler (:func:`~medgen.diffusion.samplers.discrete_step`).

        Args:
            model: ``model(x_t, model_t)`` with ``model_t`` the ORIGINAL process's integer timesteps ``(B,)``.
            x: ``x_t`` ``(B, C, *spatial)``.
            t: integer timesteps ``(B,)`` of the respaced process (``diffusion.num_timesteps - 1`` = most noise).
            generator: random generator on ``x``'s device (drawn after the network call).
            kwargs: ``consistency``, ``clip_denoised``, ``denoised_fn`` of :func:`discrete_step`.

        Returns:
            dict with ``sample`` (``x_{t-1}``) and ``pred_xstart``.
        """
        return discrete_step(self.diffusion, model, x, t, sampler=self.sampler, eta=self.eta, generator=generator,
                             **kwargs)
