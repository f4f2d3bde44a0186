"""medgen.diffusion."""
