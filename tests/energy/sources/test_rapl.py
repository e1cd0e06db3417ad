"""RaplSource on fake powercap trees: discovery, summing, wrap-around, and every error path."""

from __future__ import annotations

import logging

import pytest

from green_deploy.energy.sources.base import SourceError, SourceUnavailableError
from green_deploy.energy.sources.rapl import RaplSource, available_rapl_sources, discover
from tests.energy.sources.fake_powercap import FakePowercap


@pytest.fixture
def fake(tmp_path, monkeypatch) -> FakePowercap:
    return FakePowercap(tmp_path / "powercap", monkeypatch)


@pytest.fixture
def two_sockets(fake) -> FakePowercap:
    """A two-socket server: package, core and dram per socket, plus psys."""
    for socket in (0, 1):
        fake.add_zone(f"intel-rapl:{socket}", f"package-{socket}", energy_uj=10_000_000)
        fake.add_zone(f"intel-rapl:{socket}:0", "core", energy_uj=5_000_000)
        fake.add_zone(f"intel-rapl:{socket}:1", "dram", energy_uj=7_000_000)
    fake.add_zone("intel-rapl:2", "psys", energy_uj=50_000_000)
    return fake


def test_source_follows_the_protocol(two_sockets):
    source = RaplSource("cpu", root=two_sockets.root)
    assert (source.name, source.component, source.measured) == ("rapl", "cpu", True)
    assert 0 < source.resolution_s <= 0.01
    assert source.read_j() == 0.0  # the origin is fixed when opened
    source.close()


def test_cpu_sums_the_packages_of_both_sockets(two_sockets):
    source = RaplSource("cpu", root=two_sockets.root)
    two_sockets.advance("intel-rapl:0", 1_500_000)
    two_sockets.advance("intel-rapl:1", 2_250_000)
    assert source.read_j() == 3.75
    two_sockets.advance("intel-rapl:1", 1_000_000)
    assert source.read_j() == 4.75  # cumulative, not per read


def test_dram_is_read_separately_from_the_package(two_sockets):
    cpu = RaplSource("cpu", root=two_sockets.root)
    dram = RaplSource("dram", root=two_sockets.root)
    assert [z.name for z in dram.zones] == ["intel-rapl:0:1", "intel-rapl:1:1"]
    two_sockets.advance("intel-rapl:0:1", 400_000)
    two_sockets.advance("intel-rapl:1:1", 600_000)
    assert dram.read_j() == 1.0
    assert cpu.read_j() == 0.0


def test_psys_core_uncore_and_mmio_are_not_counted_as_cpu(fake):
    fake.add_zone("intel-rapl:0", "package-0")
    fake.add_zone("intel-rapl:0:0", "core")
    fake.add_zone("intel-rapl:0:1", "uncore")
    fake.add_zone("intel-rapl:1", "psys")
    fake.add_zone("intel-rapl-mmio:0", "package-0")  # the same counter through MMIO
    source = RaplSource("cpu", root=fake.root)
    assert [z.name for z in source.zones] == ["intel-rapl:0"]
    for zone in ("intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:1", "intel-rapl-mmio:0"):
        fake.advance(zone, 9_000_000)
    fake.advance("intel-rapl:0", 1_000_000)
    assert source.read_j() == 1.0


def test_multi_die_packages_and_amd_rapl_are_discovered(fake):
    fake.add_zone("amd-rapl:0", "package-0-die-0")
    fake.add_zone("amd-rapl:1", "package-0-die-1")
    assert [z.name for z in discover(fake.root)["cpu"]] == ["amd-rapl:0", "amd-rapl:1"]
    assert discover(fake.root)["dram"] == []


def test_zones_are_in_numeric_order(fake):
    for socket in (10, 2, 1):
        fake.add_zone(f"intel-rapl:{socket}", f"package-{socket}")
    assert [z.name for z in discover(fake.root)["cpu"]] == ["intel-rapl:1", "intel-rapl:2", "intel-rapl:10"]


def test_a_wrap_between_two_reads_is_corrected_exactly(fake):
    fake.add_zone("intel-rapl:0", "package-0", max_range_uj=1_000_000, energy_uj=999_000)
    source = RaplSource("cpu", root=fake.root)
    fake.set_energy("intel-rapl:0", 2_000)
    assert source.read_j() == 0.003


def test_many_wraps_across_reads_accumulate_without_drift(fake):
    fake.add_zone("intel-rapl:0", "package-0", max_range_uj=1_000_000, energy_uj=123_457)
    fake.add_zone("intel-rapl:1", "package-1", max_range_uj=999_983, energy_uj=999_982)
    source = RaplSource("cpu", root=fake.root)
    for _ in range(50):
        fake.advance("intel-rapl:0", 700_001)  # wraps on most reads
        fake.advance("intel-rapl:1", 1)  # steps that float accumulation would blur
        source.read_j()
    assert source.read_j() == (700_001 + 1) * 50 / 1e6


def test_wrap_period_uses_the_smallest_range(fake):
    fake.add_zone("intel-rapl:0", "package-0", max_range_uj=262_143_328_850)
    fake.add_zone("intel-rapl:1", "package-1", max_range_uj=65_532_610_987)
    source = RaplSource("cpu", root=fake.root)
    assert source.wrap_period_s(power_w=360.0) == pytest.approx(65_532.610987 / 360.0)


def test_no_powercap_tree_is_unavailable_with_the_reason(tmp_path):
    with pytest.raises(SourceUnavailableError) as excinfo:
        RaplSource("cpu", root=tmp_path / "absent")
    message = str(excinfo.value)
    assert "no RAPL zones for cpu" in message
    assert "does not exist" in message
    assert "intel_rapl" in message and "virtual machines" in message


def test_no_dram_zone_is_unavailable_for_dram_only(fake):
    fake.add_zone("intel-rapl:0", "package-0")
    RaplSource("cpu", root=fake.root)
    with pytest.raises(SourceUnavailableError, match=r"no RAPL zones for dram under .*powercap"):
        RaplSource("dram", root=fake.root)


def test_unreadable_counter_is_unavailable_with_the_chmod_fix(two_sockets):
    two_sockets.make_unreadable("intel-rapl:1")
    with pytest.raises(SourceUnavailableError) as excinfo:
        RaplSource("cpu", root=two_sockets.root)
    message = str(excinfo.value)
    assert str(two_sockets.root / "intel-rapl:1" / "energy_uj") in message
    assert f"sudo chmod o+r {two_sockets.root}/intel-rapl:*/energy_uj" in message
    assert "CVE-2020-8694" in message
    assert "udev" in message
    RaplSource("dram", root=two_sockets.root)  # only the zone made unreadable is refused


def test_a_zone_vanishing_after_opening_is_a_source_error_naming_the_file(two_sockets):
    source = RaplSource("dram", root=two_sockets.root)
    two_sockets.remove("intel-rapl:1:1")
    with pytest.raises(SourceError, match=r"intel-rapl:1:1/energy_uj") as excinfo:
        source.read_j()
    assert not isinstance(excinfo.value, SourceUnavailableError)


def test_garbage_in_a_counter_is_a_source_error_and_changes_nothing(two_sockets):
    source = RaplSource("cpu", root=two_sockets.root)
    two_sockets.advance("intel-rapl:0", 1_000_000)
    two_sockets.write("intel-rapl:1", "energy_uj", "not a number\n")
    with pytest.raises(SourceError, match=r"intel-rapl:1/energy_uj holds 'not a number'"):
        source.read_j()
    two_sockets.set_energy("intel-rapl:1", 10_500_000)
    assert source.read_j() == 1.5  # the failed read left the last values as they were


def test_a_value_above_the_range_is_a_source_error(fake):
    fake.add_zone("intel-rapl:0", "package-0", max_range_uj=1_000_000)
    source = RaplSource("cpu", root=fake.root)
    fake.set_energy("intel-rapl:0", 1_000_001)
    with pytest.raises(SourceError, match="above max_energy_range_uj"):
        source.read_j()


def test_available_sources_on_an_empty_root_is_empty_and_says_why(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="green_deploy.energy.sources.rapl"):
        assert available_rapl_sources(tmp_path) == []
    assert "RAPL cpu not available" in caplog.text
    assert "RAPL dram not available" in caplog.text


def test_available_sources_returns_what_opens(fake):
    fake.add_zone("intel-rapl:0", "package-0")
    assert [s.component for s in available_rapl_sources(fake.root)] == ["cpu"]
    fake.add_zone("intel-rapl:0:0", "dram")
    fake.make_unreadable("intel-rapl:0")
    assert [s.component for s in available_rapl_sources(fake.root)] == ["dram"]
