"""medgen.inferers."""
