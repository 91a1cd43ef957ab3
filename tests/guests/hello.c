/* Prints a line, then start.S resets the machine. */
#include "guest.h"

void main(void *zero_page)
{
    (void)zero_page;
    puts("hello from the synthetic guest\n");
}
