/* Takes the serial interrupt: the 16550 raises "transmitter empty" as soon
   as that interrupt is enabled, and the VMM delivers it through its irqfd
   to IOAPIC pin 4. */
#include "irq.h"

#define VECTOR 0x30
#define SERIAL_PIN 4

void main(void *zero_page)
{
    (void)zero_page;
    irq_init(VECTOR);
    irq_route(SERIAL_PIN, VECTOR);
    puts("armed\n");
    outb(COM1 + 1, 0x02); /* IER: transmitter-empty interrupt */
    puts(irq_wait(0) ? "interrupt received\n" : "no interrupt\n");
}
