/* Takes the serial interrupt the way Linux does: IOAPIC pin 4 routed to a
   vector, local APIC enabled, an IDT with a handler, STI and HLT. The
   16550 raises "transmitter empty" as soon as that interrupt is enabled;
   the VMM delivers it through its irqfd. */
#include "guest.h"

#define IOAPIC 0xfec00000UL
#define LAPIC 0xfee00000UL
#define LAPIC_SVR 0xf0
#define LAPIC_EOI 0xb0
#define VECTOR 0x30
#define SERIAL_PIN 4

struct __attribute__((packed)) gate {
    u16 offset_low, selector;
    u8 ist, type;
    u16 offset_mid;
    u32 offset_high, zero;
};

static struct gate idt[256] __attribute__((aligned(16)));
volatile u32 interrupts;

/* The handler: count, EOI, return. Written in asm for the iretq frame. */
void on_interrupt(void);
__asm__(".globl on_interrupt\n"
        "on_interrupt:\n"
        "    push %rax\n"
        "    lock incl interrupts(%rip)\n"
        "    xor %eax, %eax\n"
        "    movabs %eax, 0xfee000b0\n"
        "    pop %rax\n"
        "    iretq\n");

static void ioapic_write(u32 reg, u32 value)
{
    mmio_write32(IOAPIC, reg);
    mmio_write32(IOAPIC + 0x10, value);
}

void main(void *zero_page)
{
    (void)zero_page;
    u64 handler = (u64)on_interrupt;
    u16 cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    idt[VECTOR].offset_low = (u16)handler;
    idt[VECTOR].selector = cs;
    idt[VECTOR].type = 0x8e; /* present, ring 0, 64-bit interrupt gate */
    idt[VECTOR].offset_mid = (u16)(handler >> 16);
    idt[VECTOR].offset_high = (u32)(handler >> 32);
    struct __attribute__((packed)) { u16 limit; u64 base; } idtr = { sizeof(idt) - 1, (u64)idt };
    __asm__ volatile("lidt %0" : : "m"(idtr));

    /* The 8259s see every ISA line too (through LINT0); mask them, as
       Linux does once it switches to the IOAPIC. */
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    mmio_write32(LAPIC + LAPIC_SVR, 0x100 | 0xff); /* enable, spurious 0xff */
    ioapic_write(0x10 + 2 * SERIAL_PIN + 1, 0); /* destination: APIC 0 */
    ioapic_write(0x10 + 2 * SERIAL_PIN, VECTOR); /* fixed, edge, high, unmasked */
    puts("armed\n");

    outb(COM1 + 1, 0x02); /* IER: transmitter-empty interrupt */
    for (int i = 0; i < 1000 && !interrupts; i++)
        __asm__ volatile("sti; hlt; cli");
    puts(interrupts ? "interrupt received\n" : "no interrupt\n");
}
