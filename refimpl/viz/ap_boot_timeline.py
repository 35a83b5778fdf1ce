"""Lesson 04's figure: which CPU caches a translation of 0x8000, step by step, during AP boot.

`record_ap_boot` runs the real `boot_aps` under the call-chain recorder and, at each step that
matters, reads every CPU's TLB the way a debugger would; `plot_ap_boot_timeline` draws it. It
shows the two facts the lesson rests on: each AP drops its 0x8000 entry itself (the trampoline
reloads CR3), and the identity unmap happens before SMP is enabled, so it flushes only the BSP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from refimpl.kernel.ap_boot import AP_BOOT_TRAMPOLINE
from refimpl.kernel.memory_manager import MemoryManager
from refimpl.viz.call_chain import record_call_chain


@dataclass(frozen=True)
class BootStep:
    label: str
    cpu: int  # the CPU acting at this step
    caching: frozenset[int]  # the CPUs whose TLB holds a translation of 0x8000
    smp_enabled: bool


WATCHED = ["create_identity_mapped_region", "copy_trampoline", "start_ap", "MMU.load_cr3",
           "Region.destroy", "smp_enable"]


def record_ap_boot(mm: MemoryManager, boot: Callable[[MemoryManager], object]) -> list[BootStep]:
    """Run `boot(mm)` (e.g. refimpl.kernel.boot_aps) and return its steps."""
    samples = []

    def probe() -> str:
        caching = frozenset(cpu.id for cpu in mm.machine.cpus
                            if AP_BOOT_TRAMPOLINE >> 12 in cpu.mmu.tlb)
        samples.append((mm.current_cpu().id, caching, mm.smp_enabled))
        return ""

    _, events = record_call_chain(lambda: boot(mm), WATCHED, probe)
    steps, cr3_loads, ap = [], 0, 0
    for event, (cpu, caching, smp) in zip(events, samples):
        ap = cpu if cpu != 0 else ap  # start_ap returns on the BSP: name the AP it started
        label = _label(event.kind, event.function, cpu, ap, cr3_loads)
        if event.function == "MMU.load_cr3" and event.kind == "return":
            cr3_loads = (cr3_loads + 1) % 2
        if label:
            steps.append(BootStep(label, ap if event.function == "start_ap" else cpu, caching,
                                  smp))
    return steps


def _label(kind: str, function: str, cpu: int, ap: int, cr3_loads: int) -> str:
    """The step an event stands for, or "" for events the figure leaves out."""
    if function == "MMU.load_cr3" and cpu != 0:
        if kind == "return" and cr3_loads == 0:
            return f"AP {cpu}: paging on"
        if kind == "call" and cr3_loads == 1:
            return f"AP {cpu}: runs at 0x8040"
        if kind == "return":
            return f"AP {cpu}: reloads CR3"
    labels = {("return", "create_identity_mapped_region"): "BSP maps 0x8000",
              ("return", "copy_trampoline"): "BSP copies trampoline",
              ("return", "start_ap"): f"AP {ap}: init_ap",
              ("return", "Region.destroy"): "BSP unmaps 0x8000",
              ("return", "smp_enable"): "smp_enable()"}
    return labels.get((kind, function), "")


def plot_ap_boot_timeline(steps: list[BootStep], cpu_count: int):
    """A matplotlib Figure: one row per CPU, one column per step; a filled cell means that
    CPU's TLB holds 0x8000 at that step, a dot marks the CPU acting."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    figure, axes = plt.subplots(figsize=(10, 4.4), layout="constrained")
    for column, step in enumerate(steps):
        for cpu in range(cpu_count):
            cached = cpu in step.caching
            axes.add_patch(plt.Rectangle((column - 0.45, cpu - 0.4), 0.9, 0.8,
                                         color="#e67e22" if cached else "#eaeded"))
        axes.plot(column, step.cpu, "o", color="#1b2631", markersize=5)
    enabled = next((i for i, step in enumerate(steps) if step.smp_enabled), None)
    if enabled is not None:
        axes.axvline(enabled - 0.5, color="#2471a3", linestyle="--")
    axes.set(xlim=(-0.6, len(steps) - 0.4), ylim=(cpu_count - 0.4, -0.6),
             yticks=range(cpu_count), yticklabels=["CPU 0 (BSP)"] +
             [f"CPU {cpu} (AP)" for cpu in range(1, cpu_count)],
             xticks=range(len(steps)), title="Who caches a translation of 0x8000 during AP boot",
             xlabel="step of boot_aps", ylabel="CPU")
    axes.set_xticklabels([step.label for step in steps], rotation=40, ha="right", fontsize=9)
    axes.legend(handles=[Patch(color="#e67e22", label="TLB holds 0x8000"),
                         Patch(color="#eaeded", label="no 0x8000 entry"),
                         plt.Line2D([], [], marker="o", color="#1b2631", linestyle="",
                                    label="CPU acting"),
                         plt.Line2D([], [], color="#2471a3", linestyle="--",
                                    label="SMP on: TLB-flush\nIPIs possible after")],
                loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    plt.close(figure)
    return figure
