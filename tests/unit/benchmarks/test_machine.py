"""Machine description: CPU model parsing, cores, versions, GPU probing without a GPU."""

from __future__ import annotations

import shutil

import pytest

from benchmarks import machine


def test_cpu_model_from_cpuinfo_text() -> None:
    text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
    assert machine.cpu_model(text) == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"


def test_cpu_model_arm_style_and_fallback() -> None:
    assert machine.cpu_model("Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n") == "Raspberry Pi 4 Model B Rev 1.4"
    assert machine.cpu_model("processor : 0\n")  # falls back to platform, never empty


def test_usable_cores_is_positive() -> None:
    assert machine.usable_cores() >= 1


def test_library_versions_marks_missing_packages() -> None:
    versions = machine.library_versions(("numpy", "surely-not-a-real-package-xyz"))
    assert versions["numpy"][0].isdigit()
    assert versions["surely-not-a-real-package-xyz"] == "absent"
    assert versions["python"].count(".") == 2


def test_no_nvidia_smi_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert machine.gpus() == []


def test_machine_info_fields() -> None:
    info = machine.machine_info()
    assert {"cpu", "cores", "gpus", "os", "arch"} <= info.keys()
    assert info["cores"] >= 1


def test_the_thread_round_trip_is_measured_outside_an_event_loop_only() -> None:
    import asyncio

    hop = machine.thread_round_trip_us(rounds=50)
    assert hop is not None and 0 < hop < 1e6  # microseconds, not seconds

    async def inside() -> float | None:
        return machine.thread_round_trip_us(rounds=50)

    assert asyncio.run(inside()) is None  # a benchmark's own loop is never nested


def test_a_capped_instruction_set_is_named_in_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    # A run under ONEDNN_MAX_CPU_ISA is another machine as far as its numbers go (AMX off): the report says so.
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    plain = {"machine": machine.machine_info(), "threads": 2}
    assert plain["machine"]["onednn_max_cpu_isa"] is None and "ONEDNN" not in machine.machine_line(plain)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    capped = {"machine": machine.machine_info(), "threads": 2}
    assert "with ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16, " in machine.machine_line(capped)
