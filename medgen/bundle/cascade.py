"""Two inferers in a cascade, as one MONAI inferer: a low-resolution stage conditions a high-resolution stage.

The CTCA SDM bundle samples a low-resolution volume from the label map resized to ``lowres_size`` (nearest), then the
full-resolution volume slab by slab with the low-resolution volume as its reference. :class:`TwoStageInferer` runs
both with the ``monai.inferers.Inferer`` call contract, so a ``SupervisedEvaluator`` runs the cascade; its
prediction is a dictionary holding both stages (and the resized label map), which the bundle's writer saves.

Example::

    cascade = TwoStageInferer(SemanticDiffusionInferer(...), SlabPatchInferer(...), lowres_size=(64, 64, 64))
    pred = cascade(labels, {"lowres": lowres_network, "highres": highres_network})   # labels (B, 1, H, W, D)
    pred["highres"], pred["lowres"], pred["lowres_labels"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.inferers import Inferer
from monai.transforms import Resize

__all__ = ["TwoStageInferer"]


class TwoStageInferer(Inferer):
    """``lowres = first(resize(labels), networks["lowres"])``, ``highres = second(labels, networks["highres"],
    reference=lowres)``.

    Args:
        first: the low-resolution inferer, called as ``first(inputs, network)``.
        second: the high-resolution inferer, called as ``second(inputs, network, **{reference_key: lowres})``.
        lowres_size: the spatial size of the first stage's input (the label maps are resized to it, nearest).
        reference_key: the keyword under which ``second`` takes the first stage's result.
        keys: the names of the two networks in the mapping the call receives.

    Raises:
        TypeError: an inferer is not callable.
        ValueError: ``lowres_size`` is not a sequence of positive integers.
    """

    def __init__(
        self,
        first: Callable[..., torch.Tensor],
        second: Callable[..., torch.Tensor],
        lowres_size: Sequence[int],
        reference_key: str = "reference",
        keys: tuple[str, str] = ("lowres", "highres"),
    ) -> None:
        super().__init__()
        for name, inferer in (("first", first), ("second", second)):
            if not callable(inferer):
                raise TypeError(f"{name} must be a callable inferer, got {type(inferer).__name__}.")
        if isinstance(lowres_size, (str, bytes)) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in lowres_size
        ):
            raise ValueError(f"lowres_size must be positive integers, got {lowres_size!r}.")
        self.first = first
        self.second = second
        self.lowres_size = tuple(int(s) for s in lowres_size)
        self.reference_key = reference_key
        self.keys = keys

    def downsample(self, labels: torch.Tensor) -> torch.Tensor:
        """The label maps ``(B, 1, *spatial)`` resized (nearest) to ``lowres_size``, meta kept."""
        resize = Resize(self.lowres_size, mode="nearest")
        return torch.stack([resize(item) for item in labels])

    def __call__(self, inputs: torch.Tensor, network: Mapping[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run both stages.

        Args:
            inputs: label maps ``(B, 1, *spatial)``.
            network: ``{keys[0]: low-resolution network, keys[1]: high-resolution network}`` (e.g. a ``ModuleDict``).

        Returns:
            ``{"highres": ..., "lowres": ..., "lowres_labels": ...}``.

        Raises:
            TypeError: extra arguments, or ``network`` is not a mapping holding both keys.
        """
        if args or kwargs:
            raise TypeError(f"unexpected arguments {args or ''} {sorted(kwargs) if kwargs else ''}".strip() + ".")
        if not isinstance(network, Mapping) and not hasattr(network, "keys"):
            raise TypeError(f"network must map {self.keys} to networks, got {type(network).__name__}.")
        missing = [key for key in self.keys if key not in network]
        if missing:
            raise TypeError(f"network lacks {missing}; it holds {list(network.keys())}.")
        lowres_labels = self.downsample(inputs)
        lowres = self.first(lowres_labels, network[self.keys[0]])
        highres = self.second(inputs, network[self.keys[1]], **{self.reference_key: lowres})
        return {"highres": highres, "lowres": lowres, "lowres_labels": lowres_labels}
