"""medgen.checks: every error names the argument, the expected range and the value."""

from __future__ import annotations

import pytest

from medgen.checks import check_int, check_number


def test_argument_checks_name_the_argument():
    assert check_int(3, "steps") == 3
    assert check_int(None, "batch_size", allow_none=True) is None
    for bad in (0, True, 2.0, "3"):
        with pytest.raises(ValueError, match=r"steps must be an integer >= 1, got"):
            check_int(bad, "steps")
    assert check_number(2, "snr", 0.0, open_low=True) == 2.0
    with pytest.raises(ValueError, match=r"snr must be in \(0.0, inf\], got 0.0"):
        check_number(0, "snr", 0.0, open_low=True)
    with pytest.raises(ValueError, match=r"eps must be in \(0.0, 1.0\), got 1.0"):
        check_number(1.0, "eps", 0.0, 1.0, open_low=True, open_high=True)
    with pytest.raises(ValueError, match="zeta"):
        check_number(float("nan"), "zeta")
    with pytest.raises(TypeError, match="lam must be a number, got str"):
        check_number("1", "lam")
