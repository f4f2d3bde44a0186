"""medgen.physics."""
