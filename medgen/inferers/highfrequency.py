"""HFS-SDE reconstruction of undersampled (multi-coil) Cartesian MRI (Cao et al., IEEE TMI 2024).

:class:`HighFrequencySpaceInferer` composes HFS-SDE's predictor-corrector sampler (and the paper's VP-SDE and VE-SDE
baselines) from the shared parts of :mod:`medgen.diffusion`, listed in its docstring and :meth:`make_sde`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from monai.data import MetaTensor

from medgen.checks import check_choice, check_int, check_no_arguments, check_number, check_plane_mask, settings_with
from medgen.diffusion.consistency import KSpaceMeasurement
from medgen.diffusion.priors import Prior, ScorePrior, as_prior
from medgen.diffusion.samplers import PCSettings, pc_step
from medgen.diffusion.sde import HFSSDE, SDE, VESDE, VPSDE
from medgen.inferers.base import SamplingInferer
from medgen.networks.checkpoint import network_parameter
from medgen.physics.mri import channels_to_complex, complex_to_channels

__all__ = ["HighFrequencySpaceInferer", "HFSSettings", "KSpaceMeasurement", "SDE_PRESETS", "ACCELERATED"]

_OUTPUTS = ("complex", "channels", "magnitude")
SDES = ("hfs", "vp", "ve")


@dataclass(frozen=True)
class HFSSettings:
    """The sampler settings of :class:`HighFrequencySpaceInferer`; presets per SDE in :data:`SDE_PRESETS`.

    Attributes:
        sde: ``"hfs"``, ``"vp"`` or ``"ve"``.
        num_steps: time steps ``N`` (official 1000; accelerated 100/100/300 for hfs/vp/ve).
        snr: corrector signal-to-noise ratio.
        lam: data-consistency weight in the predictor (official ``sampling.mse``).
        corrector_lam: data-consistency weight in the corrector (official ``sampling.corrector_mse``).
        eps: last time of the grid (1e-3 for hfs/vp, 1e-5 for ve).
        corrector_steps: Langevin steps per time step (official ``n_steps_each = 1``; 0 = predictor only).
        table_size: length of the discrete ``beta``/``sigma`` tables (official 1000 also when accelerated, a quirk);
            ``None``: ``N``.
        beta_min, beta_max: ``beta(0)``, ``beta(1)`` of the VP/HFS schedule.
        sigma_min, sigma_max: noise std range of the VE schedule (data units).
        project_predictor_score: HFS only: project the predictor's score by ``P`` (the exact reverse SDE) instead of
            the official un-projected score.
        batch_size: items per network call and per norm coupling (``None``: the whole batch at once).
        denoise: return the last predictor's noise-free mean (official ``noise_removal=True``).
        output: ``"complex"``, ``"channels"`` or ``"magnitude"``.
    """

    sde: str = "hfs"
    num_steps: int = 1000
    snr: float = 0.16
    lam: float = 2.5
    corrector_lam: float = 0.1
    eps: float = 1e-3
    corrector_steps: int = 1
    table_size: int | None = 1000
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float = 0.01
    sigma_max: float = 348.0
    project_predictor_score: bool = False
    batch_size: int | None = None
    denoise: bool = True
    output: str = "complex"

    def __post_init__(self) -> None:
        check_choice(self.sde, "sde", SDES)
        check_choice(self.output, "output", _OUTPUTS)
        check_int(self.num_steps, "num_steps", 1)
        check_int(self.table_size, "table_size", 1, allow_none=True)
        if self.table_size is not None and self.table_size < self.num_steps:
            raise ValueError(
                f"table_size must be None or >= num_steps = {self.num_steps} (the official code would index past the "
                f"end of its {self.table_size}-long tables), got {self.table_size}."
            )
        check_number(self.snr, "snr", 0.0, open_low=True)
        check_number(self.lam, "lam", 0.0)
        check_number(self.corrector_lam, "corrector_lam", 0.0)
        check_number(self.eps, "eps", 0.0, 1.0, open_low=True)
        check_int(self.corrector_steps, "corrector_steps", 0)
        check_number(self.beta_min, "beta_min", 0.0)
        check_number(self.beta_max, "beta_max", self.beta_min, open_low=True)
        check_number(self.sigma_min, "sigma_min", 0.0, open_low=True)
        check_number(self.sigma_max, "sigma_max", self.sigma_min, open_low=True)
        check_int(self.batch_size, "batch_size", 1, allow_none=True)

    @property
    def pc(self) -> PCSettings:
        """The predictor-corrector settings: Euler-Maruyama (hfs, vp) or reverse diffusion (ve), batch norms."""
        predictor = "reverse_diffusion" if self.sde == "ve" else "euler_maruyama"
        return PCSettings(self.snr, self.corrector_steps, predictor, "batch_mean")


SDE_PRESETS: dict[str, HFSSettings] = {
    "hfs": HFSSettings(),
    "vp": HFSSettings("vp", snr=0.27, corrector_lam=2.5),
    "ve": HFSSettings("ve", snr=0.10, lam=5.0, corrector_lam=5.0, eps=1e-5),
}
"""Official sampling defaults of HFS-SDE's configs (``configs/{hfssde,vp,ve}/ddpm_continuous.py``): ``lam`` is
``sampling.mse``, ``corrector_lam`` is ``sampling.corrector_mse``."""

ACCELERATED = {"hfs": {"num_steps": 100, "snr": 0.32}, "vp": {"num_steps": 100, "snr": 0.43},
               "ve": {"num_steps": 300, "snr": 0.10}}
"""The values the official configs switch to with ``sampling.accelerated_sampling=True``."""


class HighFrequencySpaceInferer(SamplingInferer):
    """HFS-SDE predictor-corrector reconstruction of undersampled Cartesian MRI (Cao et al., TMI 2024), with the
    VP-SDE and VE-SDE baselines of the paper through the same interface.

    For ``t_i = linspace(1, eps, N)``, each step runs the Langevin CORRECTOR first and then the PREDICTOR at the same
    ``t_i`` (HFS-SDE's order; score_sde runs them the other way round):

    - prior: :meth:`prior`, a VP/VE :class:`~medgen.diffusion.priors.ScorePrior` of the network;
    - data consistency: :class:`~medgen.diffusion.consistency.NormalizedGradient`, ``g ||s|| / ||g|| * lam`` with
      ``g = A^H (A x - y)``, ``A = M F S`` (``corrector_lam`` in the corrector, ``lam`` in the predictor; norms
      over the minibatch, as official);
    - step: :func:`~medgen.diffusion.samplers.pc_step`: Langevin corrector (noise and score projected by HFS-SDE's
      high-frequency projector ``P``), then Euler-Maruyama (``"hfs"``, ``"vp"``, with the official UN-projected
      score) or reverse diffusion (``"ve"``);
    - start: :meth:`initial_sample` (``"hfs"``: the measured low-frequency band, coil-combined, plus high-frequency
      white noise);
    - result: the last predictor's noise-free ``x_mean`` (``denoise=True``, official ``noise_removal``) or ``x``.

    Network calls: ``N * (corrector_steps + 1)``. The call's inputs and output: :meth:`sample`; in a MONAI
    ``SupervisedEvaluator``, hand ``mask`` and ``sensitivity_maps`` over as the keyword arguments returned by a custom
    ``prepare_batch``. The defaults are the official sampler with its quirks (``table_size``,
    ``project_predictor_score``, ``batch_size``): see the bundle ``hfssde_mri``.

    Args:
        low_frequency_mask: HFS-SDE's training mask ``M`` (1 = low frequency, never diffused), ``(H, W)`` or
            ``(1, 1, H, W)``, real/bool/complex, centred like the k-space (e.g. 16 central columns: HFS-SDE's
            ``low_frequency_acs16``). Required for ``sde="hfs"``, unused for ``"vp"``/``"ve"``.
        sde: ``"hfs"``, ``"vp"`` or ``"ve"``.
        accelerated: use the official accelerated-sampling defaults (``num_steps`` 100/100/300 and ``snr``
            0.32/0.43/0.10 for hfs/vp/ve) instead of ``N = 1000``.
        settings: fields of :class:`HFSSettings` over the preset of ``sde`` (and ``accelerated``), and the keywords
            of :class:`~medgen.inferers.base.SamplingInferer`. ``warm_start`` here: a complex image ``(B, 1, H, W)``
            in the k-space's units or a method name (e.g. ``"cgls"``: CG-SENSE), noised by the SDE's marginal
            (:meth:`~medgen.diffusion.sde.SDE.perturb`: high frequencies only for HFS); the level is that std.

    Raises:
        ValueError: an option is out of range or ``low_frequency_mask`` is missing for ``sde="hfs"``.
        TypeError: an option has the wrong type.

    Example::

        import torch
        from medgen.inferers.highfrequency import HighFrequencySpaceInferer
        from medgen.networks.ddpm import DDPMUNet
        from medgen.physics.mri import fft2c

        network = DDPMUNet(image_size=32, nf=32, ch_mult=(1, 2), num_res_blocks=0, attn_resolutions=()).eval()
        image = torch.randn(1, 1, 32, 32, dtype=torch.complex64)
        maps = torch.ones(1, 4, 32, 32, dtype=torch.complex64) / 2              # sum_c |S_c|^2 = 1
        mask = torch.zeros(32, 32)
        mask[:, ::4] = 1
        mask[:, 12:20] = 1                                                       # equispaced + 8 ACS columns
        kspace = fft2c(maps * image) * mask                                      # (1, 4, 32, 32) complex
        low_frequency = torch.zeros(32, 32)
        low_frequency[:, 14:18] = 1                                              # HFS training mask M
        inferer = HighFrequencySpaceInferer(low_frequency, num_steps=2, seed=0, progress=False)
        recon = inferer(kspace, network, mask=mask, sensitivity_maps=maps)      # (1, 1, 32, 32) complex MetaTensor
    """

    warm_starts = True

    def __init__(
        self,
        low_frequency_mask: torch.Tensor | None = None,
        *,
        sde: str = "hfs",
        accelerated: bool = False,
        **settings: Any,
    ) -> None:
        super().__init__(**self.options(settings))
        check_choice(sde, "sde", SDES)
        preset = settings_with(SDE_PRESETS[sde], ACCELERATED[sde] if accelerated else {}, type(self).__name__)
        # None keeps the preset's value where the setting itself cannot be None
        settings = {k: v for k, v in settings.items() if v is not None or k in ("table_size", "batch_size")}
        self.settings = settings_with(preset, settings, type(self).__name__)
        if low_frequency_mask is None and sde == "hfs":
            raise ValueError("low_frequency_mask is required for sde='hfs' (HFS-SDE's training mask M), got None.")
        mask = low_frequency_mask
        self.low_frequency_mask = None if mask is None else check_plane_mask(mask, "low_frequency_mask")

    def config(self) -> dict[str, Any]:
        low = self.low_frequency_mask
        mask = None if low is None else [int(low.sum().item()), list(low.shape)]
        return {**super().config(), "low_frequency_mask": mask}

    def make_sde(self, device: torch.device | str = "cpu") -> SDE:
        """The SDE of the sampler with ``N = num_steps`` and the discrete tables of length ``table_size``.

        Args:
            device: where HFS-SDE's low-frequency mask lives (the tables are moved on use).

        Returns:
            :class:`HFSSDE`, :class:`VPSDE` or :class:`VESDE`.
        """
        st = self.settings
        n, table = st.num_steps, st.table_size
        if st.sde == "hfs":
            assert self.low_frequency_mask is not None
            return HFSSDE(
                self.low_frequency_mask, st.beta_min, st.beta_max, N=n, table_size=table,
                project_reverse_score=st.project_predictor_score,
            ).to(device)
        if st.sde == "vp":
            return VPSDE(st.beta_min, st.beta_max, N=n, table_size=table)
        return VESDE(st.sigma_min, st.sigma_max, N=n, table_size=table)

    def prior(self, network: Any) -> Prior:
        """``network`` as a prior: a score network whose time input is the marginal std of the sampler's SDE
        (VP std for ``"hfs"``/``"vp"``, ``sigma(t)`` for ``"ve"``), e.g. :class:`~medgen.networks.ddpm.DDPMUNet`;
        a :class:`~medgen.diffusion.priors.Prior` is used as given."""
        noise_model = "ve" if self.settings.sde == "ve" else "vp"
        return as_prior(network, lambda net: ScorePrior(net, noise_model))

    def measurement(
        self,
        kspace: torch.Tensor,
        mask: torch.Tensor,
        sensitivity_maps: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> KSpaceMeasurement:
        """:meth:`KSpaceMeasurement.multicoil` of the data (the arguments and errors are its), with HFS-SDE's
        low-frequency image for ``sde="hfs"``."""
        low = self.low_frequency_mask if self.settings.sde == "hfs" else None
        return KSpaceMeasurement.multicoil(kspace, mask, sensitivity_maps, low, dtype)

    def initial_sample(
        self,
        measurement: KSpaceMeasurement,
        sde: SDE,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``x_T``: ``A_low^H y + P z`` (HFS), ``z`` (VP) or ``sigma_max z`` (VE), ``(B, 2, H, W)``."""
        if isinstance(sde, HFSSDE):
            assert measurement.low_frequency_image is not None
            return sde.conditional_prior_sampling(measurement.low_frequency_image, generator=generator)
        y = measurement.y
        shape = (y.shape[0], 2, *y.shape[-2:])
        return sde.prior_sampling(shape, generator=generator, device=y.device, dtype=y.dtype)

    def warm_sample(
        self, measurement: KSpaceMeasurement, sde: SDE, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The warm start at time ``t``: the estimate in ``[real, imag]`` channels perturbed by the SDE's marginal,
        ``(B, 2, H, W)``."""
        y = measurement.y
        estimate = self.warm_start.reconstruct(measurement.operator, y)
        estimate = complex_to_channels(estimate) if estimate.is_complex() else estimate
        shape = (y.shape[0], 2, *y.shape[-2:])
        if tuple(estimate.shape) != shape:
            raise ValueError(
                f"warm_start must be a complex image ({shape[0]}, 1, {shape[2]}, {shape[3]}) or channels {shape}, got "
                f"{tuple(estimate.shape)}."
            )
        estimate = estimate.to(y.real.dtype)
        noise = torch.randn(shape, generator=generator, device=y.device, dtype=estimate.dtype)
        return sde.perturb(estimate, t.expand(shape[0]), noise)

    # ---------------------------------------------------------------------------------------------------- call
    def sample(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[..., torch.Tensor],
        *args: Any,
        mask: torch.Tensor | None = None,
        sensitivity_maps: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MetaTensor:
        """Reconstruct the coil-combined image from undersampled k-space.

        Args:
            inputs: k-space ``(B, Nc, H, W)`` complex (centred, DC at index ``n // 2``, orthonormal
                :func:`~medgen.physics.mri.fft2c` convention, phase encoding along ``W`` for HFS-SDE's column masks),
                zero outside the mask or not (it is multiplied by ``mask``). HFS-SDE normalises each slice by
                ``1.5 * std(kspace)`` before sampling; do the same (the network was trained on that scale). A volume
                is reconstructed slice by slice, its slices ``(S, Nc, H, W)`` as the batch (a 3-D acquisition
                inverse-FFT'd along the fully sampled readout/slice axis first), ``batch_size`` at a time.
            network: score network ``network(x, std)`` on ``(B, 2, H, W)`` (e.g. a loaded
                :class:`~medgen.networks.ddpm.DDPMUNet`) or a :class:`~medgen.diffusion.priors.Prior`, on ``inputs``'
                device.
            args: extra positional arguments are not accepted.
            mask: sampling mask broadcastable to ``inputs`` (required): ``(H, W)``, ``(1, 1, H, W)``, ``(B, 1, H, W)``.
            sensitivity_maps: complex coil maps ``(B or 1, Nc, H, W)`` (ESPIRiT, ``sum_c |S_c|^2 = 1``), or ``None``
                for single coil (``Nc = 1``); HFS-SDE's real ``c2r`` maps ``(B, 2 Nc, H, W)`` are converted with
                :func:`~medgen.physics.mri.channels_to_complex` first.
            kwargs: extra keyword arguments are not accepted.

        Returns:
            a :class:`~monai.data.MetaTensor` with the meta/affine of ``inputs`` (when it is one) holding the
            coil-combined image (``sum_c conj(S_c) x_c``-weighted, the ESPIRiT combination the network was trained
            on): ``output="complex"``: ``(B, 1, H, W)`` complex; ``"channels"``: ``(B, 2, H, W)`` real
            ``[real, imag]`` (HFS-SDE's own layout); ``"magnitude"``: ``(B, 1, H, W)`` real ``|x|`` (HFS-SDE's
            metrics).

        Raises:
            TypeError: bad types/dtypes, unexpected arguments, a network that is not callable.
            ValueError: shapes that do not fit together.
        """
        check_no_arguments(args, kwargs)
        prior = self.prior(network)
        parameter = network_parameter(network if not isinstance(network, Prior) else network.network)
        dtype = torch.float32 if parameter is None else parameter.dtype
        measurement = self.measurement(inputs, mask, sensitivity_maps, dtype=dtype)
        device, batch, settings = measurement.y.device, measurement.y.shape[0], self.settings
        chunk = batch if settings.batch_size is None else min(settings.batch_size, batch)
        parts = [slice(start, start + chunk) for start in range(0, batch, chunk)]
        terms = [
            (part.term(settings.corrector_lam), part.term(settings.lam))
            for part in (measurement if len(parts) == 1 else measurement.restrict(p) for p in parts)
        ]
        sde = self.make_sde(device)
        generator = self.generator(device)
        timesteps = torch.linspace(sde.T, settings.eps, settings.num_steps, device=device)

        def step(i: int, state: dict[str, Any]) -> dict[str, Any]:
            xs, means = [], []
            for part, (corrector_term, predictor_term) in zip(parts, terms):
                x = state["x"][part]
                x, x_mean = pc_step(
                    prior, x, timesteps[i].expand(x.shape[0]), sde, settings.pc,
                    corrector_consistency=corrector_term, predictor_consistency=predictor_term, generator=generator,
                )
                xs.append(x)
                means.append(x_mean)
            return {"x": torch.cat(xs), "x_mean": torch.cat(means)}

        operator = measurement.operator
        fingerprint = {"measurement": measurement.y, "mask": operator.mask,
                       "sensitivity_maps": operator.sensitivity_maps}
        with torch.no_grad():
            start = self.warm_start.first_step(sde.noise_level(timesteps))
            if start:
                x = self.warm_sample(measurement, sde, timesteps[start], generator)
            else:
                x = self.initial_sample(measurement, sde, generator)
            loop = self.sampling_loop(settings.num_steps, tuple(inputs.shape), extra=fingerprint)
            state = loop.run({"x": x, "x_mean": x}, step, generator=generator, start_step=start)
        result = state["x_mean"] if settings.denoise else state["x"]
        if settings.output != "channels":
            result = channels_to_complex(result)
            if settings.output == "magnitude":
                result = result.abs()
        return self.wrap_output(result, inputs)
