"""medgen.engines."""
