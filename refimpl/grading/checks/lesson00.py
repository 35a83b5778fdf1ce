"""The checks of lesson 00: the machine."""

from __future__ import annotations

from refimpl.grading.checks.common import (call, describe_format, format_cases, passed, seeds,
                                           shown)
from refimpl.grading.exercises import CheckFailed, exercise
from refimpl.grading.transcript import record
from refimpl.grading.problems import random_address, random_entry, random_tiny_machine
from refimpl.hw import PTEFlags, level_name

@exercise("00-split-address", "Split a virtual address into indices and offset", 2,
          "split_address")
def check_split_address(split_address, hidden=False):
    cases = 0
    for rng, fmt in format_cases(hidden):
        address = random_address(fmt, rng)
        case = f"{address:#x} in {describe_format(fmt)}"
        indices, offset = call(split_address, fmt, address, case=case)
        record(case, list(indices), offset)
        for level, wanted in enumerate(fmt.indices(address)):
            if level >= len(indices) or indices[level] != wanted:
                got = shown(indices[level], "d") if level < len(indices) else "nothing"
                raise CheckFailed(f"{case}: the {level_name(fmt, level)} index (level "
                                  f"{level}) is {wanted}, you gave {got}")
        if len(indices) != fmt.levels:
            raise CheckFailed(f"{case}: {fmt.name} has {fmt.levels} levels, you gave "
                              f"{len(indices)} indices")
        if offset != fmt.page_offset(address):
            raise CheckFailed(f"{case}: the page offset is {fmt.page_offset(address):#x}, "
                              f"you gave {shown(offset)}")
        cases += 1
    return passed(cases, "addresses in 5 formats")


@exercise("00-decode-entry", "Decode a page-table entry", 2, "decode_entry")
def check_decode_entry(decode_entry, hidden=False):
    cases = 0
    for rng, fmt in format_cases(hidden):
        entry = random_entry(fmt, rng)
        case = f"entry {entry:#x} in {describe_format(fmt)}"
        present, frame, flags = call(decode_entry, fmt, entry, case=case)
        wanted_flags = fmt.decode_flags(entry)
        record(case, bool(present), frame, [bool(flag & flags) for flag in PTEFlags
                                            if flag is not PTEFlags.PRESENT and fmt.has(flag)])
        if bool(present) != bool(wanted_flags & PTEFlags.PRESENT):
            raise CheckFailed(f"{case}: present is bit {fmt.present_bit}, which is "
                              f"{entry >> fmt.present_bit & 1}; you said {present}")
        if frame != fmt.decode_frame(entry):
            raise CheckFailed(f"{case}: the frame is {fmt.decode_frame(entry):#x} (bits "
                              f"{fmt.frame_shift}..{fmt.frame_shift + fmt.frame_bits - 1}),"
                              f" you gave {shown(frame)}")
        for flag in PTEFlags:
            if flag is not PTEFlags.PRESENT and fmt.has(flag) and \
                    bool(flag & flags) != bool(flag & wanted_flags):
                state = "set" if flag & wanted_flags else "clear"
                raise CheckFailed(f"{case}: {flag.name} (bit {fmt.flag_bits[flag]}) is "
                                  f"{state}, you said otherwise")
        cases += 1
    return passed(cases, "entries in 5 formats")


@exercise("00-walk", "Walk the page tables by hand", 3, "walk")
def check_walk(walk, hidden=False):
    cases = 0
    for seed in seeds(hidden):
        problem = random_tiny_machine(seed)
        for address, wanted in problem.answer().items():
            case = f"machine random_tiny_machine({seed}), address {address:#05x}"
            got = call(walk, problem.machine.memory, problem.cr3, address, case=case)
            record(case, got)
            if got != wanted:
                expected = "a fault (None)" if wanted is None else f"{wanted:#x}"
                raise CheckFailed(f"{case}: expected {expected}, got {shown(got)}")
            cases += 1
    return passed(cases, "translations on random tiny machines")


@exercise("00-error-code", "Build a page-fault error code", 1, "page_fault_error_code")
def check_error_code(page_fault_error_code, hidden=False):
    bits = (("present", 1), ("write", 2), ("user", 4), ("fetch", 16))
    for combination in range(16):
        flags = {name: bool(combination >> i & 1) for i, (name, _) in enumerate(bits)}
        wanted = sum(value for i, (_, value) in enumerate(bits) if combination >> i & 1)
        got = call(page_fault_error_code, *flags.values(), case=str(flags))
        record(str(flags), got)
        if got != wanted:
            raise CheckFailed(f"{flags}: the error code is {wanted:#07b}, you gave "
                              f"{shown(got, '#07b')}")
    return passed(16, "combinations")
