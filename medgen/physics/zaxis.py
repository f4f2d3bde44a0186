"""Z-axis averaging: the measurement model of TPDM's MR z-axis super-resolution (MR-ZSR)."""

from __future__ import annotations

import math

import torch

from medgen.physics.base import LinearOperator
from medgen.checks import check_choice, check_positive_int, check_tensor

__all__ = ["ZAxisAverage", "decoupling_matrix"]

# TPDM's hard-coded decoupling matrices (hyn2028/tpdm controllable_generation.get_tpdm_zsr.get_M), reproduced to the
# digits printed there. They are Helmert matrices except for factor 3, whose second column has the opposite sign and
# float32-rounded entries; the projection onto the span of any subset of columns is the same either way.
_TPDM_DECOUPLING: dict[int, list[list[float]]] = {
    2: [[0.70710678118, 0.70710678118], [0.70710678118, -0.70710678118]],
    3: [
        [5.7735014e-01, -8.1649649e-01, 4.7008697e-08],
        [5.7735026e-01, 4.0824834e-01, 7.0710671e-01],
        [5.7735026e-01, 4.0824822e-01, -7.0710683e-01],
    ],
    4: [
        [0.5, 0.866025403784439, 0, 0],
        [0.5, -0.288675134594813, 0.816496580927726, 0],
        [0.5, -0.288675134594813, -0.408248290463863, 0.707106781186548],
        [0.5, -0.288675134594813, -0.408248290463863, -0.707106781186548],
    ],
    5: [
        [0.447213595499958, 0.894427190999916, 0, 0, 0],
        [0.447213595499958, -0.223606797749979, 0.866025403784439, 0, 0],
        [0.447213595499958, -0.223606797749979, -0.288675134594813, 0.816496580927726, 0],
        [0.447213595499958, -0.223606797749979, -0.288675134594813, -0.408248290463863, 0.707106781186548],
        [0.447213595499958, -0.223606797749979, -0.288675134594813, -0.408248290463863, -0.707106781186548],
    ],
}

_REMAINDER_MODES = ("crop", "partial")


def decoupling_matrix(
    factor: int, official: bool = True, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> torch.Tensor:
    """The ``factor x factor`` orthonormal basis TPDM uses to split a block of ``factor`` samples into mean and rest.

    Column 0 is ``1 / sqrt(factor)`` (so the first decoupled coefficient of a block is ``sqrt(factor) * mean``); column
    ``j >= 1`` is the Helmert contrast: ``sqrt((f - j) / (f - j + 1))`` at row ``j - 1``,
    ``-1 / sqrt((f - j)(f - j + 1))`` at rows ``j .. f - 1`` and ``0`` above. A block ``v`` (a row vector) is
    decoupled as ``v @ M`` and coupled back as ``c @ M^-1`` (``= c @ M^T``).

    Args:
        factor: block length, ``>= 1``.
        official: for factors 2-5 return TPDM's hard-coded matrix digit for digit (factor 3 differs from Helmert by the
            sign of column 1); ``False`` or any other factor gives the exact Helmert matrix.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        tensor of shape ``(factor, factor)``.

    Raises:
        ValueError: when ``factor < 1``.
    """
    check_positive_int(factor, "factor")
    if official and factor in _TPDM_DECOUPLING:
        return torch.tensor(_TPDM_DECOUPLING[factor], dtype=dtype, device=device)
    matrix = torch.zeros(factor, factor, dtype=torch.float64)
    matrix[:, 0] = 1.0 / math.sqrt(factor)
    for j in range(1, factor):
        rest = factor - j
        matrix[j - 1, j] = math.sqrt(rest / (rest + 1))
        matrix[j:, j] = -1.0 / math.sqrt(rest * (rest + 1))
    return matrix.to(dtype=dtype, device=device)


class ZAxisAverage(LinearOperator):
    """Mean of ``factor`` consecutive samples along one axis (thick-slice acquisition along z).

    ``A(x)[..., k] = mean(x[..., k * factor : (k + 1) * factor])`` along ``axis``, which is TPDM's MR-ZSR measurement
    (``sum_i x[..., i::f] / f`` over the last axis of each coronal slice). An input of length ``L`` along ``axis``
    gives ``L // factor`` means, plus one mean of the trailing ``L % factor`` samples when ``remainder="partial"``.

    * ``forward``: ``(..., L, ...) -> (..., M, ...)``.
    * ``adjoint``: spreads each mean back over its block divided by the block length (zeros for cropped samples);
      ``length`` is the ``L`` to restore (default: the constructor's ``length``, else ``M * factor``).
    * ``pseudo_inverse``: the Moore-Penrose inverse in closed form, ``repeat_interleave`` of each mean over its block
      (TPDM's ``A_dagger``) with zeros for cropped samples, so ``A(pseudo_inverse(y)) == y``.
    * ``decouple`` / ``couple``: TPDM's change of basis per block (:func:`decoupling_matrix`) used by its
      data-consistency projection; ``measured_mask`` marks the decoupled coefficients that ``A`` observes. In TPDM's
      notation, with ``op = ZAxisAverage(f, axis=-1)`` and ``y`` the measurement::

          y_dagger = op.pseudo_inverse(y, length=L)
          mask = op.measured_mask(y_dagger)
          x_init = op.couple(op.decouple(y_dagger) * mask + op.decouple(noise) * (1 - mask))
          residual = op.couple(op.decouple(x0_hat) * mask - noisy_decoupled_measurement * mask)

    Args:
        factor: number of samples averaged into one measurement, ``>= 1``.
        axis: tensor axis of ``x`` along which to average (negative counts from the end; TPDM: ``-1``).
        remainder: what happens to the trailing ``L % factor`` samples. ``"crop"`` (TPDM, default) drops them: ``A``
            ignores them, ``adjoint``/``pseudo_inverse``/``decouple``/``couple`` return zeros there.
            ``"partial"`` averages them into one extra measurement of a shorter block.
        length: optional length ``L`` of the full-resolution axis, used by ``adjoint``/``pseudo_inverse`` when no
            ``length`` is passed (needed with ``remainder="crop"`` to restore the cropped samples as zeros).
        official_decoupling: use TPDM's hard-coded matrices for factors 2-5 (parity), see :func:`decoupling_matrix`.

    Raises:
        ValueError: on a non-positive ``factor``, an unknown ``remainder`` or a ``length`` below ``factor``.
    """

    def __init__(
        self,
        factor: int,
        axis: int = -1,
        remainder: str = "crop",
        length: int | None = None,
        official_decoupling: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int(factor, "factor")
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise TypeError(f"axis must be an int, got {type(axis).__name__}.")
        check_choice(remainder, "remainder", _REMAINDER_MODES)
        if length is not None and (not isinstance(length, int) or length < factor):
            raise ValueError(f"length must be an integer >= factor ({factor}), got {length!r}.")
        self.factor = factor
        self.axis = axis
        self.remainder = remainder
        self.length = length
        self.official_decoupling = official_decoupling
        matrix = decoupling_matrix(factor, official=official_decoupling)
        self.register_buffer("decoupling", matrix)
        self.register_buffer("coupling", torch.linalg.inv(matrix))

    def extra_repr(self) -> str:
        return f"factor={self.factor}, axis={self.axis}, remainder={self.remainder!r}, length={self.length}"

    # ------------------------------------------------------------------ shapes
    def measured_length(self, length: int) -> int:
        """Number of measurements ``M`` produced from ``length`` samples."""
        full, rest = divmod(length, self.factor)
        return full + (1 if rest and self.remainder == "partial" else 0)

    def _axis_of(self, t: torch.Tensor, name: str) -> int:
        check_tensor(t, name)
        if not -t.ndim <= self.axis < t.ndim:
            raise ValueError(f"axis {self.axis} is out of range for {name} with shape {tuple(t.shape)}.")
        return self.axis % t.ndim

    def _target_length(self, measured: int, length: int | None) -> int:
        length = self.length if length is None else length
        if length is None:
            return measured * self.factor
        if self.measured_length(length) != measured:
            raise ValueError(
                f"length {length} gives {self.measured_length(length)} measurements with factor {self.factor} and "
                f"remainder={self.remainder!r}, but the measurement has {measured} along axis {self.axis}."
            )
        return length

    # ---------------------------------------------------------------- operator
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average blocks of ``factor`` samples.

        Args:
            x: tensor of any shape with ``L >= factor`` samples along ``axis``.

        Returns:
            ``x`` with ``axis`` shortened to ``M = measured_length(L)``.
        """
        axis = self._axis_of(x, "x")
        length = x.shape[axis]
        if length < self.factor:
            raise ValueError(f"x has {length} samples along axis {self.axis}, fewer than factor {self.factor}.")
        moved = x.movedim(axis, -1)
        full = length // self.factor
        out = moved[..., : full * self.factor].unflatten(-1, (full, self.factor)).mean(-1)
        if self.remainder == "partial" and length % self.factor:
            out = torch.cat([out, moved[..., full * self.factor :].mean(-1, keepdim=True)], dim=-1)
        return out.movedim(-1, axis)

    def _spread(self, y: torch.Tensor, length: int | None, weight_by_block: bool) -> torch.Tensor:
        axis = self._axis_of(y, "y")
        measured = y.shape[axis]
        length = self._target_length(measured, length)
        moved = y.movedim(axis, -1)
        full, rest = divmod(length, self.factor)
        blocks = moved[..., :full]
        if weight_by_block:
            blocks = blocks / self.factor
        parts = [blocks.repeat_interleave(self.factor, dim=-1)]
        if rest:
            if self.remainder == "partial":
                last = moved[..., full:]
                parts.append((last / rest if weight_by_block else last).expand(*moved.shape[:-1], rest))
            else:
                parts.append(moved.new_zeros(*moved.shape[:-1], rest))
        return torch.cat(parts, dim=-1).movedim(-1, axis)

    def adjoint(self, y: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Apply ``A^T``: each mean spread over its block and divided by the block length.

        Args:
            y: measurement with ``M`` samples along ``axis``.
            length: full-resolution length ``L`` to return (default: the constructor's ``length``, else
                ``M * factor``).

        Returns:
            tensor with ``L`` samples along ``axis`` (zeros at cropped samples).
        """
        return self._spread(y, length, weight_by_block=True)

    def pseudo_inverse(self, y: torch.Tensor, length: int | None = None) -> torch.Tensor:  # type: ignore[override]
        """Closed-form Moore-Penrose inverse: repeat each mean over its block (TPDM's ``A_dagger``).

        Args:
            y: measurement with ``M`` samples along ``axis``.
            length: full-resolution length ``L`` to return (default: the constructor's ``length``, else
                ``M * factor``; TPDM's ``A_dagger`` returns ``M * factor`` samples).

        Returns:
            tensor with ``L`` samples along ``axis``, zeros at cropped samples; ``forward`` of it equals ``y``.
        """
        return self._spread(y, length, weight_by_block=False)

    # ------------------------------------------------------- TPDM decoupling
    def _change_basis(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        axis = self._axis_of(x, "x")
        moved = x.movedim(axis, -1)
        length = moved.shape[-1]
        full, rest = divmod(length, self.factor)
        matrix = (self.coupling if inverse else self.decoupling).to(device=x.device, dtype=x.dtype)
        blocks = moved[..., : full * self.factor].unflatten(-1, (full, self.factor))
        parts = [(blocks @ matrix).flatten(-2)]
        if rest:
            if self.remainder == "partial":
                partial = decoupling_matrix(rest, official=self.official_decoupling)
                partial = torch.linalg.inv(partial) if inverse else partial
                parts.append(moved[..., full * self.factor :] @ partial.to(device=x.device, dtype=x.dtype))
            else:
                parts.append(moved.new_zeros(*moved.shape[:-1], rest))
        return torch.cat(parts, dim=-1).movedim(-1, axis)

    def decouple(self, x: torch.Tensor) -> torch.Tensor:
        """Change each length-``factor`` block along ``axis`` to TPDM's decoupled basis (``block @ M``).

        The coefficient at position ``k * factor`` (the first of block ``k``) is ``sqrt(factor)`` times the block mean,
        i.e. ``sqrt(factor) * A(x)[k]``; the others span the null space of ``A``. Trailing samples: zeros with
        ``remainder="crop"`` (as TPDM), decoupled with the matrix of their own length with ``"partial"``.

        Args:
            x: tensor with ``L`` samples along ``axis``.

        Returns:
            tensor of the same shape.
        """
        return self._change_basis(x, inverse=False)

    def couple(self, c: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`decouple` (``block @ M^-1``), with the same handling of trailing samples.

        Args:
            c: decoupled tensor with ``L`` samples along ``axis``.

        Returns:
            tensor of the same shape.
        """
        return self._change_basis(c, inverse=True)

    def measured_mask(self, x: torch.Tensor) -> torch.Tensor:
        """1 at the decoupled coefficients observed by ``A`` (the first of each block), 0 elsewhere.

        TPDM uses ``mask[..., ::factor] = 1``; here cropped trailing samples are 0 (they are zero after
        :meth:`decouple` anyway, so the projection is identical), and with ``remainder="partial"`` the first trailing
        sample is 1.

        Args:
            x: a full-resolution tensor (``L`` samples along ``axis``); gives the shape, device and dtype.

        Returns:
            tensor of ``x``'s dtype and device, shaped ``(1, ..., L, ..., 1)`` (``L`` at ``axis``), broadcastable to
            ``x``.
        """
        axis = self._axis_of(x, "x")
        length = x.shape[axis]
        mask = torch.zeros(length, device=x.device, dtype=x.dtype)
        full = length // self.factor
        mask[: full * self.factor : self.factor] = 1
        if self.remainder == "partial" and length % self.factor:
            mask[full * self.factor] = 1
        shape = [1] * x.ndim
        shape[axis] = length
        return mask.view(shape)
