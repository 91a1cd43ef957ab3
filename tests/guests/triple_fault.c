/* Loads an empty IDT and raises an exception: #UD cannot be delivered,
   nor the #DF that follows, so the CPU shuts down (a triple fault). */
#include "guest.h"

void main(void *zero_page)
{
    struct __attribute__((packed)) { u16 limit; u64 base; } idt = { 0, 0 };
    (void)zero_page;
    puts("faulting\n");
    __asm__ volatile("lidt %0; ud2" : : "m"(idt));
}
