"""Target files for `asyncecho sweep`: the line format, CSV, CIDR blocks and
the bad lines, with their numbers and reasons."""

from __future__ import annotations

import ipaddress

import pytest

from asyncecho import Target
from asyncecho.sweeps.targets import (
    BadLine,
    TargetLine,
    TargetParser,
    cidr_host_count,
    parse_lines,
    parse_spec,
)


def targets(text: str, **defaults: object) -> list[Target]:
    found: list[Target] = []
    for entry in parse_lines(text.splitlines(keepends=True), **defaults):  # type: ignore[arg-type]
        assert isinstance(entry, TargetLine), entry
        found += entry.targets()
    return found


def bad_lines(text: str, **defaults: object) -> list[BadLine]:
    return [
        entry
        for entry in parse_lines(text.splitlines(keepends=True), **defaults)  # type: ignore[arg-type]
        if isinstance(entry, BadLine)
    ]


# --- the line format -------------------------------------------------------------------


def test_line_format_good_file() -> None:
    text = """\
# a comment, then a blank line

127.0.0.1
127.0.0.2:11112
PACS@127.0.0.3:4242
  localhost:105   # a trailing comment
[::1]:11112
::1
[::1]
STORE SCP@127.0.0.4
host-1.example.org.:104
"""
    assert targets(text, called_ae="DEFAULT", calling_ae="ME") == [
        Target("127.0.0.1", 104, "DEFAULT", "ME"),
        Target("127.0.0.2", 11112, "DEFAULT", "ME"),
        Target("127.0.0.3", 4242, "PACS", "ME"),
        Target("localhost", 105, "DEFAULT", "ME"),
        Target("::1", 11112, "DEFAULT", "ME"),
        Target("::1", 104, "DEFAULT", "ME"),
        Target("::1", 104, "DEFAULT", "ME"),
        Target("127.0.0.4", 104, "STORE SCP", "ME"),
        Target("host-1.example.org.", 104, "DEFAULT", "ME"),
    ]


def test_default_port_applies_to_lines_without_one() -> None:
    assert targets("127.0.0.1\n127.0.0.1:11112\n", port=4242) == [
        Target("127.0.0.1", 4242),
        Target("127.0.0.1", 11112),
    ]


def test_ip_addresses_are_normalised() -> None:
    assert [t.host for t in targets("[0:0:0:0:0:0:0:1]:104\n")] == ["::1"]


def test_line_numbers_count_comments_and_blank_lines() -> None:
    entries = list(parse_lines(["# c\n", "\n", "127.0.0.1\n", "bad host\n"]))
    assert [entry.number for entry in entries] == [3, 4]


def test_crlf_and_bom_free_lines() -> None:
    assert targets("127.0.0.1:11112\r\n127.0.0.2\r\n") == [
        Target("127.0.0.1", 11112),
        Target("127.0.0.2", 104),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("127.0.0.1:", "missing port"),
        ("127.0.0.1:abc", "invalid port 'abc'"),
        ("127.0.0.1:0", "port 0 is not in 1-65535"),
        ("127.0.0.1:65536", "port 65536 is not in 1-65535"),
        ("127.0.0.1:104:5", "invalid IPv6 address"),
        ("[::1", "'[' without a closing ']'"),
        ("[::1]x", "unexpected 'x' after ']'"),
        ("[::1]:", "missing port"),
        ("[::zz]:104", "invalid IPv6 address"),
        ("127.0.0.256", "invalid IPv4 address"),
        ("bad host", "white space inside the host"),
        ("under_score..example", "invalid host name"),
        ("-leading.example", "invalid host name"),
        ("@127.0.0.1", "empty called AE title"),
        ("WAY-TOO-LONG-AE-TITLE@127.0.0.1", "longer than 16 characters"),
        ("BAD\\AE@127.0.0.1", "invalid character"),
        ("127.0.0.0/33", "invalid CIDR block"),
        ("a,b", "invalid host name"),
    ],
)
def test_bad_lines_say_why(line: str, reason: str) -> None:
    (bad,) = bad_lines(f"127.0.0.1\n{line}\n")
    assert bad.number == 2
    assert reason in bad.reason
    assert str(bad).startswith("line 2: ")
    assert repr(line) in str(bad)


def test_bad_lines_do_not_stop_the_good_ones() -> None:
    entries = list(parse_lines(["127.0.0.1\n", "nope nope\n", "127.0.0.2\n", "x:0\n"]))
    assert [type(entry).__name__ for entry in entries] == [
        "TargetLine",
        "BadLine",
        "TargetLine",
        "BadLine",
    ]


def test_non_text_bytes_become_a_bad_line_not_an_error() -> None:
    (bad,) = bad_lines("127.0.0.1\n\ufffd\ufffdhost\n")
    assert "invalid host name" in bad.reason


# --- CIDR ----------------------------------------------------------------------------


def test_cidr_block_expands_to_its_hosts() -> None:
    found = targets("PACS@127.0.0.0/28:11112\n")
    assert [t.host for t in found] == [f"127.0.0.{i}" for i in range(1, 15)]
    assert {(t.port, t.called_ae) for t in found} == {(11112, "PACS")}


@pytest.mark.parametrize(
    ("block", "count"),
    [
        ("127.0.0.0/28", 14),
        ("127.0.0.0/30", 2),
        ("127.0.0.0/31", 2),
        ("127.0.0.1/32", 1),
        ("::1/128", 1),
        ("::/127", 2),
        ("::/120", 255),
    ],
)
def test_cidr_count_matches_the_hosts(block: str, count: int) -> None:
    network = ipaddress.ip_network(block)
    assert cidr_host_count(network) == count == len(list(network.hosts()))
    (entry,) = parse_lines([f"[{block}]:104\n" if ":" in block else f"{block}\n"])
    assert isinstance(entry, TargetLine)
    assert entry.count == count == len(list(entry.targets()))


def test_cidr_with_host_bits_set_means_the_block() -> None:
    assert len(targets("127.0.0.5/29\n")) == 6


def test_cidr_over_the_cap_is_a_bad_line() -> None:
    assert bad_lines("127.0.0.0/20\n", max_cidr_hosts=4096) == []  # 4094 hosts
    (bad,) = bad_lines("127.0.0.0/19\n", max_cidr_hosts=4096)
    assert "127.0.0.0/19 has 8190 hosts, more than the limit of 4096" in bad.reason
    assert "--max-cidr-hosts" in bad.reason


def test_cidr_cap_can_be_raised_and_expansion_is_lazy() -> None:
    entry = parse_spec("127.0.0.0/8", max_cidr_hosts=1 << 24)
    assert entry.count == (1 << 24) - 2
    first = next(entry.targets())
    assert first == Target("127.0.0.1", 104)


def test_cidr_cap_counts_the_hosts_not_the_addresses() -> None:
    assert isinstance(parse_spec("127.0.0.0/29", max_cidr_hosts=6).host, ipaddress.IPv4Network)
    with pytest.raises(ValueError, match="has 6 hosts, more than the limit of 5"):
        parse_spec("127.0.0.0/29", max_cidr_hosts=5)


# --- CSV ------------------------------------------------------------------------------


def test_csv_with_header_in_any_order_and_defaults_for_empty_cells() -> None:
    text = """\
# exported from the PACS inventory
port,host,calling_aet,called_aet,site
11112,127.0.0.1,ME,PACS,north
,127.0.0.2,,,south
4242,::1,,,
"104",127.0.0.0/30,,"AE ONE",
"""
    assert targets(text, called_ae="ANY-SCP", calling_ae="ECHOSCU") == [
        Target("127.0.0.1", 11112, "PACS", "ME"),
        Target("127.0.0.2", 104, "ANY-SCP", "ECHOSCU"),
        Target("::1", 4242, "ANY-SCP", "ECHOSCU"),
        Target("127.0.0.1", 104, "AE ONE", "ECHOSCU"),
        Target("127.0.0.2", 104, "AE ONE", "ECHOSCU"),
    ]


def test_csv_bad_rows_are_numbered() -> None:
    text = "host,port\n127.0.0.1,104\n,104\n127.0.0.1,x\n127.0.0.1,104\nbad host,1\n"
    bad = bad_lines(text)
    assert [(b.number, b.reason) for b in bad] == [
        (3, "empty host"),
        (4, "invalid port 'x'"),
        (6, "white space inside the host"),
    ]


def test_csv_header_needs_a_host_column() -> None:
    (bad, *_) = bad_lines("address,port\n127.0.0.1,104\n")
    assert bad.number == 1
    assert "'host' column" in bad.reason


def test_csv_output_of_a_sweep_is_a_valid_target_file() -> None:
    text = (
        "host,port,called_aet,calling_aet,ok,outcome,detail\n"
        "127.0.0.1,11112,PACS,ME,false,refused,connection refused\n"
    )
    assert targets(text) == [Target("127.0.0.1", 11112, "PACS", "ME")]


def test_parser_fed_line_by_line_keeps_its_state() -> None:
    parser = TargetParser(port=11112)
    assert parser.feed("# header next\n") is None
    assert parser.feed("host,called_aet\n") is None
    entry = parser.feed("127.0.0.1,PACS\n")
    assert isinstance(entry, TargetLine)
    assert (entry.number, entry.port, entry.called_ae) == (3, 11112, "PACS")


# --- Target ----------------------------------------------------------------------------


def test_target_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="1-65535"):
        Target("127.0.0.1", 0)
    with pytest.raises(TypeError, match="port must be int"):
        Target("127.0.0.1", "104")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        Target("")
    with pytest.raises(ValueError, match="longer than 16"):
        Target("127.0.0.1", 104, called_ae="X" * 17)
    assert Target("127.0.0.1", 104, called_ae=" PACS ").called_ae == "PACS"


def test_target_str() -> None:
    assert str(Target("127.0.0.1", 104)) == "127.0.0.1:104"
    assert str(Target("::1", 11112, "PACS")) == "PACS@[::1]:11112"


@pytest.mark.parametrize(
    "block",
    ["10.0.0.0/29", "10.0.0.0/30", "10.0.0.0/31", "10.0.0.1/32", "fd00::/125", "fd00::/127"],
)
def test_is_block_host_agrees_with_hosts(block: str) -> None:
    """Whether a block stands for an address, without expanding it (used by
    --resume to count the done targets of a CIDR line)."""
    from asyncecho.sweeps.targets import is_block_host

    network = ipaddress.ip_network(block)
    hosts = set(network.hosts())
    around = {
        network.network_address - 1,
        *network,
        network.broadcast_address + 1,
        ipaddress.ip_address("192.0.2.1" if network.version == 4 else "2001:db8::1"),
    }
    for address in around:
        assert is_block_host(address, network) == (address in hosts), address
    other = ipaddress.ip_address("::1" if network.version == 4 else "127.0.0.1")
    assert not is_block_host(other, network)
