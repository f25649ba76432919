"""tc adapter: pure helpers (tbf parameters, rate checks, parsing the kernel's qdisc answer)."""

from __future__ import annotations

import pytest
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from dockyard.adapters import tc
from dockyard.adapters.tc import (
    HANDLE,
    MAX_RATE_BPS,
    MIN_RATE_BPS,
    TbfParams,
    root_rate,
    tbf_params,
)
from dockyard.errors import BackendError

# RTM_NEWQDISC answers captured from kernel 6.18 (RTM_GETQDISC parent root, NLM_F_ECHO).
# `tc qdisc replace dev X root handle d7a: tbf rate 50mbit burst 62500 latency 50ms`:
TBF_D7A_50MBIT = bytes.fromhex(
    "bc00000024000000010000003a3f0000000000004f08000000007a0dffffffff0300000008000100"
    "746266002c000200280001000001000000000000105e5f00000000000000000000000000d8b80500"
    "5a6202000000000005000c00000000003000070014000100c2020000000000000900000000000000"
    "1800030000000000000000000000000000000000000000002c000300c20200000000000009000000"
    "00000000000000000000000000000000000000000000000000000000")
# a veth's default root qdisc:
NOQUEUE = bytes.fromhex(
    "9400000024000000010000003a3f0000000000004e08000000000000ffffffff020000000c000100"
    "6e6f71756575650005000c0000000000300007001400010000000000000000000000000000000000"
    "1800030000000000000000000000000000000000000000002c000300000000000000000000000000"
    "00000000000000000000000000000000000000000000000000000000")
# the same tbf under a foreign handle (1:), patched in the tcmsg header
TBF_FOREIGN = TBF_D7A_50MBIT[:24] + bytes.fromhex("00000100") + TBF_D7A_50MBIT[28:]


def decode(raw: bytes) -> tcmsg:
    msg = tcmsg(raw)
    msg.decode()
    return msg


class _Ack:
    def __getitem__(self, key: str) -> dict[str, int]:
        assert key == "header"
        return {"type": 2}


@pytest.mark.parametrize(("rate_bps", "mtu", "expected"), [
    (50_000_000, 1500, TbfParams(rate=6_250_000, burst=62_500, limit=375_000)),
    # low rates: the burst never drops below 4 full frames (4 * 1514)
    (1_000_000, 1500, TbfParams(rate=125_000, burst=6_056, limit=6_250 + 6_056)),
    (MIN_RATE_BPS, 1500, TbfParams(rate=8_000, burst=6_056, limit=400 + 6_056)),
    # jumbo frames raise that floor
    (1_000_000, 9000, TbfParams(rate=125_000, burst=36_056, limit=6_250 + 36_056)),
    # 10 Gbit: 10 ms of rate
    (10_000_000_000, 1500,
     TbfParams(rate=1_250_000_000, burst=12_500_000, limit=62_500_000 + 12_500_000)),
    # not a multiple of 8: rounded down to whole bytes/s, burst rounded up
    (50_000_007, 1500, TbfParams(rate=6_250_000, burst=62_500, limit=375_000)),
    (8_000_100, 1500, TbfParams(rate=1_000_012, burst=10_001, limit=50_001 + 10_001)),
])
def test_tbf_params(rate_bps: int, mtu: int, expected: TbfParams) -> None:
    params = tbf_params(rate_bps, mtu)
    assert params == expected
    assert params.burst >= params.rate * 0.010  # >= 10 ms of the effective rate
    assert params.limit > params.burst


def test_tbf_params_at_the_top_of_the_range() -> None:
    params = tbf_params(MAX_RATE_BPS)
    assert params.rate == 2**32 - 1  # still fits the kernel's 32-bit bytes/s field
    assert params.limit < 2**32


@pytest.mark.parametrize("bad", [0, -1, MIN_RATE_BPS - 1, MAX_RATE_BPS + 1, 1.5e6, "50mbit",
                                 True, None])
def test_check_rate_rejects(bad: object) -> None:
    with pytest.raises(BackendError, match="rate"):
        tc.check_rate(bad)


def test_check_rate_accepts_the_bounds() -> None:
    assert tc.check_rate(MIN_RATE_BPS) == MIN_RATE_BPS
    assert tc.check_rate(MAX_RATE_BPS) == MAX_RATE_BPS


def test_root_rate_reads_our_tbf() -> None:
    msg = decode(TBF_D7A_50MBIT)
    assert msg["handle"] == HANDLE
    assert root_rate([msg]) == 50_000_000
    assert root_rate([_Ack(), msg]) == 50_000_000  # acks are skipped


def test_root_rate_ignores_what_is_not_ours() -> None:
    assert root_rate([decode(NOQUEUE)]) is None
    assert root_rate([decode(TBF_FOREIGN)]) is None
    assert root_rate([_Ack()]) is None
    assert root_rate([]) is None
