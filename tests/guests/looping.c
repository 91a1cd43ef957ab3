/* Says it started, then spins forever: only the VMM's deadline ends it. */
#include "guest.h"

void main(void *zero_page)
{
    (void)zero_page;
    puts("looping\n");
    for (;;)
        __asm__ volatile("pause");
}
