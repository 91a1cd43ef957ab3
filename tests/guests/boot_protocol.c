/* Prints what the VMM wrote in the zero page (struct boot_params): the
   command line, the initramfs and a checksum of its bytes, the e820 map. */
#include "guest.h"

#define E820_ENTRIES 0x1e8
#define RAMDISK_IMAGE 0x218
#define RAMDISK_SIZE 0x21c
#define CMD_LINE_PTR 0x228
#define E820_TABLE 0x2d0

struct __attribute__((packed)) e820 { u64 addr, size; u32 type; };

void main(u8 *zp)
{
    u32 initrd = *(u32 *)(zp + RAMDISK_IMAGE), size = *(u32 *)(zp + RAMDISK_SIZE);
    const u8 *bytes = (const u8 *)(u64)initrd;
    u64 sum = 0;
    for (u32 i = 0; i < size; i++)
        sum = sum * 31 + bytes[i];
    puts("cmdline=");
    puts((const char *)(u64)*(u32 *)(zp + CMD_LINE_PTR));
    puts("\ninitramfs=");
    puthex(initrd);
    puts(" size=");
    puthex(size);
    puts(" sum=");
    puthex(sum);
    puts("\n");
    struct e820 *map = (struct e820 *)(zp + E820_TABLE);
    for (u8 i = 0; i < zp[E820_ENTRIES]; i++) {
        puts("e820 ");
        puthex(map[i].addr);
        puts(" ");
        puthex(map[i].size);
        puts(" ");
        puthex(map[i].type);
        puts("\n");
    }
}
