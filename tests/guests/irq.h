/* Interrupts the way Linux takes them: an IDT entry per vector, the local
   APIC enabled, an IOAPIC pin routed to a vector, the 8259s masked. One
   handler counts every interrupt in `interrupts` and sends the EOI. */
#ifndef IRQ_H
#define IRQ_H

#include "guest.h"

#define IOAPIC 0xfec00000UL
#define LAPIC 0xfee00000UL
#define LAPIC_SVR 0xf0

struct __attribute__((packed)) gate {
    u16 offset_low, selector;
    u8 ist, type;
    u16 offset_mid;
    u32 offset_high, zero;
};

static struct gate idt[256] __attribute__((aligned(16)));
volatile u32 interrupts;

void on_interrupt(void);
__asm__(".globl on_interrupt\n"
        "on_interrupt:\n"
        "    push %rax\n"
        "    lock incl interrupts(%rip)\n"
        "    xor %eax, %eax\n"
        "    movabs %eax, 0xfee000b0\n" /* local APIC EOI */
        "    pop %rax\n"
        "    iretq\n");

static inline void ioapic_write(u32 reg, u32 value)
{
    mmio_write32(IOAPIC, reg);
    mmio_write32(IOAPIC + 0x10, value);
}

/* Loads the IDT with the handler at `vector`, masks the 8259s (they see
   every ISA line too, through LINT0), enables the local APIC. */
static inline void irq_init(u8 vector)
{
    u64 handler = (u64)on_interrupt;
    u16 cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    idt[vector].offset_low = (u16)handler;
    idt[vector].selector = cs;
    idt[vector].type = 0x8e; /* present, ring 0, 64-bit interrupt gate */
    idt[vector].offset_mid = (u16)(handler >> 16);
    idt[vector].offset_high = (u32)(handler >> 32);
    struct __attribute__((packed)) { u16 limit; u64 base; } idtr = { sizeof(idt) - 1, (u64)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    mmio_write32(LAPIC + LAPIC_SVR, 0x100 | 0xff); /* enable, spurious 0xff */
}

/* IOAPIC pin `pin` to `vector` on APIC 0: fixed, edge, active high. */
static inline void irq_route(u8 pin, u8 vector)
{
    ioapic_write(0x10 + 2 * pin + 1, 0);
    ioapic_write(0x10 + 2 * pin, vector);
}

/* Sleeps until an interrupt arrives (or gives up); true if one did. */
static inline int irq_wait(u32 before)
{
    for (int i = 0; i < 1000 && interrupts == before; i++)
        __asm__ volatile("sti; hlt; cli");
    return interrupts != before;
}

#endif
