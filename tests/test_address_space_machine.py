"""AddressSpace driven at random, against a plain model of which pages are mapped how.

The model is, per address space, a dict from page address to (access, byte at offset 0). Steps
include reads and writes of up to 16 pages (each page faulting on its own), forks of forks,
copy-on-write faults handled while another address space (or the kernel's) is loaded, and
mmap(MAP_FIXED) over existing mappings. After
every step the §17 invariants are checked on the real kernel: regions do not overlap and agree
with the tree's keys and gaps, lookups equal a brute-force scan, page-table refcounts equal
present PDEs, every present user PTE maps its region's VMObject page with the right rights, no
writable PTE maps a zero or CoW page, free + used pages == total, and munmap leaves no PTE.
Kernel threads come and go beside them: their stacks are kernel regions, and the kernel's
RegionTree must stay sound with every page of every kernel region mapped where it says.
"""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from refimpl.ak import MUST
from refimpl.hw import X86_64, Machine, MiB
from refimpl.hw import Access, PageFault
from refimpl.kernel import (PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, AddressSpace,
                            MemoryManager, PagePurpose, read_user_memory, write_user_memory)
from refimpl.kernel.syscalls import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, sys_mmap
from refimpl.kernel.invariants import (address_space_violations,
                                       brute_force_region_containing, kernel_region_violations,
                                       page_table_refcount_violations, physical_page_violations)
from refimpl.kernel.thread import Thread

PAGE = 4096
WINDOW = 40  # pages where specific placements, munmap and mprotect aim
PROTS = [PROT_READ | PROT_WRITE] * 3 + [PROT_READ, PROT_NONE, PROT_EXEC, PROT_READ | PROT_EXEC,
                                       PROT_WRITE]


class AddressSpaceMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.mm = MemoryManager(Machine(X86_64, ram_size=32 * MiB))
        space = MUST(AddressSpace.try_create(self.mm))
        self.spaces = [space]
        self.models = [{}]
        self.threads = []  # kernel threads: their stacks are kernel regions

    # helpers -------------------------------------------------------------------------------

    def _base(self, i):
        return self.spaces[i].region_tree.total_range.base

    def _pages(self, i, first, count):
        return [self._base(i) + (first + n) * PAGE for n in range(count)]

    def _map_in_model(self, i, region, prot):
        for page in range(region.page_count()):
            self.models[i][region.vaddr() + page * PAGE] = (prot, 0)

    space_index = st.integers(0, 3)

    def _pick(self, index):
        return index % len(self.spaces)

    # rules ---------------------------------------------------------------------------------

    @rule(index=space_index, pages=st.integers(1, 6), prot=st.sampled_from(PROTS),
          randomize=st.booleans())
    def allocate_anywhere(self, index, pages, prot, randomize):
        i = self._pick(index)
        region = MUST(self.spaces[i].allocate_region(pages * PAGE, prot=prot, mmap=True,
                                                     randomize=randomize))
        assert not any(page in self.models[i] for page in self._pages_of(region))
        self._map_in_model(i, region, prot)

    def _pages_of(self, region):
        return [region.vaddr() + n * PAGE for n in range(region.page_count())]

    @rule(index=space_index, first=st.integers(0, WINDOW - 1), pages=st.integers(1, 6),
          prot=st.sampled_from(PROTS))
    def place_specifically(self, index, first, pages, prot):
        i = self._pick(index)
        wanted = self._pages(i, first, pages)
        result = self.spaces[i].allocate_region(pages * PAGE, address=wanted[0], prot=prot,
                                                mmap=True)
        free = not any(page in self.models[i] for page in wanted)
        assert result.is_error() != free, (wanted[0], pages, result)
        if free:
            self._map_in_model(i, result.value(), prot)
        else:
            assert result.error().code() == 12  # ENOMEM, as place_specifically

    @rule(index=space_index, first=st.integers(0, WINDOW - 1), pages=st.integers(1, 10))
    def munmap(self, index, first, pages):
        i = self._pick(index)
        wanted = self._pages(i, first, pages)
        MUST(self.spaces[i].unmap_mmap_range(wanted[0], pages * PAGE))
        for page in wanted:
            self.models[i].pop(page, None)

    @rule(index=space_index, first=st.integers(0, WINDOW - 1), pages=st.integers(1, 8),
          prot=st.sampled_from(PROTS + [PROT_WRITE | PROT_EXEC]))
    def mprotect(self, index, first, pages, prot):
        i = self._pick(index)
        wanted = self._pages(i, first, pages)
        result = self.spaces[i].mprotect(wanted[0], pages * PAGE, prot)
        mapped = [page in self.models[i] for page in wanted]
        if not any(mapped) or prot & PROT_EXEC:  # anonymous memory is never made executable
            assert result.error().code() == 22
        elif not all(mapped):
            assert result.error().code() == 12
        else:
            assert not result.is_error(), result
            for page in wanted:
                self.models[i][page] = (prot, self.models[i][page][1])

    @rule(index=space_index, first=st.integers(0, WINDOW - 1), pages=st.integers(1, 8),
          prot=st.sampled_from([p for p in PROTS if not p & PROT_EXEC]))
    def mmap_fixed(self, index, first, pages, prot):
        """MAP_FIXED over whatever is there: the old pages go, fresh zero pages come."""
        i = self._pick(index)
        wanted = self._pages(i, first, pages)
        address = MUST(sys_mmap(self.spaces[i], wanted[0], pages * PAGE, prot,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED))
        assert address == wanted[0]
        for page in wanted:
            self.models[i][page] = (prot, 0)

    @precondition(lambda self: len(self.spaces) < 4)
    @rule(index=space_index)
    def fork(self, index):
        i = self._pick(index)
        self.spaces.append(MUST(self.spaces[i].try_clone(seed=len(self.spaces))))
        self.models.append(dict(self.models[i]))

    def _target(self, i, data):
        """Mostly a mapped page (so that accesses succeed and faults get handled), sometimes
        any page of the window."""
        model = self.models[i]
        if model and data.draw(st.integers(0, 3)):
            return data.draw(st.sampled_from(sorted(model)))
        return self._base(i) + data.draw(st.integers(0, WINDOW + 8)) * PAGE

    def _span(self, i, data):
        """(address, length): from a target page, at an offset, over up to 16 pages."""
        address = self._target(i, data) + data.draw(st.sampled_from([0, 0, 1, 100, PAGE - 1]))
        return address, data.draw(st.sampled_from([1, 2, PAGE, 2 * PAGE, 5 * PAGE - 7,
                                                   9 * PAGE, 16 * PAGE]))

    @staticmethod
    def _touched(address, length):
        first = address - address % PAGE
        return list(range(first, address + length, PAGE))

    @rule(index=space_index, data=st.data(), value=st.integers(1, 255))
    def write(self, index, data, value):
        """Page by page: every page before the first unwritable one is written."""
        i = self._pick(index)
        address, length = self._span(i, data)
        result = write_user_memory(self.spaces[i], address, bytes([value]) * length)
        model = self.models[i]
        for page in self._touched(address, length):
            prot = model.get(page, (None,))[0]
            if prot is None or not prot & PROT_WRITE:
                assert result.error().code() == 14
                return
            if page >= address:
                model[page] = (prot, value)
        assert not result.is_error(), result

    @rule(index=space_index, data=st.data())
    def read(self, index, data):
        i = self._pick(index)
        address, length = self._span(i, data)
        result = read_user_memory(self.spaces[i], address, length)
        model = self.models[i]
        touched = self._touched(address, length)
        if all(model.get(page, (0,))[0] & (PROT_READ | PROT_WRITE) for page in touched):
            data_read = result.value()
            for page in touched:
                if page >= address:
                    assert data_read[page - address] == model[page][1]
        else:
            assert result.error().code() == 14

    @rule(index=space_index, other=space_index, data=st.data())
    def cow_fault_while_another_space_is_loaded(self, index, other, data):
        """The fault handler runs with another directory (or the kernel's) in CR3: the copy
        must still be of this space's page."""
        i = self._pick(index)
        space = self.spaces[i]
        cow_pages = [page for page, (prot, _) in sorted(self.models[i].items())
                     if prot & PROT_WRITE and
                     space.find_region_containing(page).should_cow(
                         (page - space.find_region_containing(page).vaddr()) // PAGE)]
        if not cow_pages:
            return
        page = data.draw(st.sampled_from(cow_pages))
        j = self._pick(other)
        loaded = self.mm.kernel_page_directory() if i == j else self.spaces[j].page_directory
        mmu = self.mm.current_cpu().mmu
        saved = mmu.cr3
        mmu.load_cr3(loaded.cr3())
        try:
            MUST(space.handle_page_fault(PageFault(page, 1 | Access.WRITE | Access.USER)))
        finally:
            mmu.load_cr3(saved)
        assert MUST(read_user_memory(space, page, 1))[0] == self.models[i][page][1]

    @precondition(lambda self: len(self.spaces) > 1)
    @rule(index=space_index)
    def tear_down(self, index):
        i = self._pick(index)
        self.spaces.pop(i).destroy()
        self.models.pop(i)

    @precondition(lambda self: len(self.threads) < 3)
    @rule()
    def create_thread(self):
        thread = MUST(Thread.try_create(self.mm, f"t{len(self.threads)}"))
        assert self.mm.kernel_region_from_vaddr(thread.kernel_stack_top() - 1) is \
            thread.kernel_stack_region
        self.threads.append(thread)

    @precondition(lambda self: self.threads)
    @rule(index=st.integers(0, 2))
    def exit_thread(self, index):
        thread = self.threads.pop(index % len(self.threads))
        base = thread.kernel_stack_base()
        thread.destroy()
        assert self.mm.kernel_region_from_vaddr(base) is None

    # invariants ----------------------------------------------------------------------------

    @invariant()
    def kernel_state_is_consistent(self):
        for space in self.spaces:
            assert address_space_violations(space) == []
        assert kernel_region_violations(self.mm) == []
        assert page_table_refcount_violations(self.mm) == []
        assert physical_page_violations(self.mm) == []

    @invariant()
    def model_matches_the_regions(self):
        for space, model in zip(self.spaces, self.models):
            mapped = {page for region in space.region_tree.regions()
                      for page in self._pages_of(region)}
            assert mapped == set(model)
            for page in list(model)[:8]:
                assert space.find_region_containing(page) is \
                    brute_force_region_containing(space, page)

    def teardown(self):
        for space in self.spaces:
            space.destroy()
        for thread in self.threads:
            thread.destroy()
        leaked = [page for page in self.mm.live_physical_pages()
                  if page.purpose in (PagePurpose.USER, PagePurpose.PAGE_DIRECTORY)
                  and page.may_return_to_freelist.value]
        assert leaked == [], f"pages left after tearing everything down: {leaked}"


AddressSpaceMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30,
                                                 deadline=None)
TestAddressSpaceMachine = AddressSpaceMachine.TestCase
