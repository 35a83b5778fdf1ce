"""/proc/<pid>/vm: SerenityOS's keys (f0f97e1db02: Kernel/ProcessSpecificExposed.cpp#L231-L275),
values computed by hand for the example program, and the layout's page characters."""

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.kernel import MemoryManager
from refimpl.kernel.process import Process, ProgramImage
from refimpl.kernel.procfs import (LayoutRow, access_letters, layout, short_pagemap,
                                   virtual_memory_stats)

PAGE = 4096
KEYS = ["readable", "writable", "executable", "stack", "shared", "syscall", "purgeable",
        "volatile", "cacheable", "address", "size", "amount_resident", "amount_dirty",
        "cow_pages", "name", "vmobject", "pagemap"]


def exec_example(seed=0):
    mm = MemoryManager(Machine(X86_64, ram_size=16 * MiB))
    return MUST(Process.try_exec(mm, ProgramImage.example(), seed=seed))


def stats_by_label(process):
    stats = {entry["address"]: entry for entry in virtual_memory_stats(process.space)}
    return {label: stats[address] for label, address in process.labels.items()}


def test_the_keys_are_serenityos_keys_in_its_order():
    for entry in virtual_memory_stats(exec_example().space):
        file_backed = entry["vmobject"] == "SharedInodeVMObject"
        assert list(entry) == [key for key in KEYS if not (file_backed and key == "volatile")]


def test_values_after_exec_match_a_count_by_hand():
    process = exec_example()
    stats = stats_by_label(process)
    text, data, stack = stats["text"], stats["data"], stats["stack"]
    assert (text["readable"], text["writable"], text["executable"], text["shared"]) == \
        (True, False, True, True)
    assert (text["amount_resident"], text["amount_dirty"], text["cow_pages"]) == (2 * PAGE, 0, 0)
    assert (text["name"], text["vmobject"], text["purgeable"]) == \
        ("/bin/hello", "SharedInodeVMObject", False)
    assert text["pagemap"] == "PP"
    assert (data["size"], data["amount_resident"], data["amount_dirty"]) == \
        (3 * PAGE, PAGE, PAGE)
    assert data["pagemap"] == "PZZ" and data["cow_pages"] == 0 and data["purgeable"]
    assert stack["stack"] and stack["size"] == 256 * PAGE and stack["amount_resident"] == PAGE
    assert stack["pagemap"] == "Z" * 255 + "P"
    assert stats["signal trampoline"]["syscall"] and stats["signal trampoline"]["shared"]
    assert sum(entry["syscall"] for entry in stats.values()) == 1
    assert stats["tls"]["amount_resident"] == 0 and stats["tls"]["name"].endswith("(master-tls)")
    assert not any(entry["volatile"] for entry in stats.values() if "volatile" in entry)


def test_fork_marks_the_written_pages_copy_on_write_in_both():
    parent = exec_example()
    MUST(parent.write(parent.address_of("data") + PAGE, b"x"))
    child = MUST(parent.fork())
    for process in (parent, child):
        data = stats_by_label(process)["data"]
        assert data["cow_pages"] == 2 and data["pagemap"] == "PPZ"
    MUST(child.write(child.address_of("data"), b"y"))
    assert stats_by_label(child)["data"]["cow_pages"] == 1
    assert stats_by_label(parent)["data"]["cow_pages"] == 2  # the parent has not written yet


def test_layout_marks_each_page():
    parent = exec_example()
    MUST(parent.write(parent.address_of("data") + PAGE, b"x"))
    child = MUST(parent.fork())
    MUST(child.write(child.address_of("data"), b"y"))
    rows = {row.name: row for row in layout(child.space) if row.name != "/bin/hello"}
    assert rows["/bin/hello (data-rw)"].pages == "#c."
    assert rows["Signal trampoline"].pages == "s"
    assert rows["/bin/hello (master-tls)"].pages == "."
    text = [row for row in layout(child.space) if row.name == "/bin/hello"]
    assert [(row.access, row.pages) for row in text] == [("r-x", "ss"), ("r--", "s")]
    row = rows["/bin/hello (data-rw)"]
    assert isinstance(row, LayoutRow) and row.end == row.base + 3 * PAGE and row.resident() == 2
    bases = [row.base for row in layout(child.space)]
    assert bases == sorted(bases)


def test_an_entry_reads_as_access_letters_and_a_long_pagemap_as_runs():
    entry = {"readable": True, "writable": False, "executable": True}
    assert access_letters(entry) == "r-x"
    assert short_pagemap("PZZN") == "PZZN"
    assert short_pagemap("Z" * 255 + "P") == "Z×255 P"
    assert short_pagemap("N" + "P" * 20, longest=30) == "N" + "P" * 20
