//! The x86_64 machine a kernel boots into: descriptor tables, page tables,
//! registers, CPUID, MSRs and the MP table.

pub mod cpuid;
pub mod gdt;
pub mod mptable;
pub mod msr;
pub mod paging;
pub mod regs;
