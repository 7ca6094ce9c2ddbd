// cpu/pages.h: a hint to the kernel about fresh output buffers.
#pragma once
#include <cstddef>

namespace qsim {

// Asks for transparent huge pages over the 2 MiB-aligned part of [address, address + bytes): a fresh
// buffer's first touch then faults once per 2 MiB instead of once per 4 KiB, and those faults, not the
// rounding, are most of the time of quantizing into a new tensor of many MiB. A hint only: the contents
// are unchanged, and where the system has no such pages nothing happens.
void advise_huge_pages(void* address, std::size_t bytes);

}  // namespace qsim
