/* A polling virtio-blk driver over virtio-mmio at 0xd0000000: negotiates
   features, sets up one 8-entry queue, and prints the outcome of each
   request: write, read back, flush, GET_ID, past the end, an unknown type,
   two malformed chains, then one more write to show the device goes on;
   last, a read that waits for the used-buffer interrupt on IOAPIC pin 5. */
#include "irq.h"

#define BASE 0xd0000000UL
#define MAGIC 0x000
#define VERSION 0x004
#define DEVICE_ID 0x008
#define DEVICE_FEATURES 0x010
#define DEVICE_FEATURES_SEL 0x014
#define DRIVER_FEATURES 0x020
#define DRIVER_FEATURES_SEL 0x024
#define QUEUE_SEL 0x030
#define QUEUE_NUM_MAX 0x034
#define QUEUE_NUM 0x038
#define QUEUE_READY 0x044
#define QUEUE_NOTIFY 0x050
#define INTERRUPT_STATUS 0x060
#define INTERRUPT_ACK 0x064
#define STATUS 0x070
#define QUEUE_DESC 0x080
#define QUEUE_AVAIL 0x090
#define QUEUE_USED 0x0a0
#define CONFIG 0x100

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define F_FLUSH (1u << 9)
#define F_VERSION_1_HIGH 1u /* bit 32 */
#define D_NEXT 1
#define D_WRITE 2
#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8
#define QSIZE 8

struct desc { u64 addr; u32 len; u16 flags, next; };
struct avail { u16 flags, idx, ring[QSIZE]; };
struct used { u16 flags, idx; struct { u32 id, len; } ring[QSIZE]; };

static struct desc descs[QSIZE] __attribute__((aligned(4096)));
static struct avail avail __attribute__((aligned(4096)));
static struct used used __attribute__((aligned(4096)));
static struct { u32 type, reserved; u64 sector; } hdr;
static u8 data[1024] __attribute__((aligned(512)));
static volatile u8 status;
static u16 seen;

static u32 rd(u32 reg) { return mmio_read32(BASE + reg); }
static void wr(u32 reg, u32 v) { mmio_write32(BASE + reg, v); }

static void fail(const char *why)
{
    puts("FAIL ");
    puts(why);
    puts("\n");
    reset();
}

static void set(int i, const volatile void *addr, u32 len, u16 flags)
{
    descs[i].addr = (u64)addr;
    descs[i].len = len;
    descs[i].flags = flags;
    descs[i].next = 0;
}

/* Offers descriptors 0..n-1 as one chain and waits for it to be used;
   returns the used length. */
static u32 submit(int n)
{
    for (int i = 0; i + 1 < n; i++) {
        descs[i].flags |= D_NEXT;
        descs[i].next = (u16)(i + 1);
    }
    avail.ring[avail.idx % QSIZE] = 0;
    barrier();
    avail.idx++;
    barrier();
    wr(QUEUE_NOTIFY, 0);
    for (long spin = 0; *(volatile u16 *)&used.idx == seen; spin++)
        if (spin > 100000000)
            fail("request never completed");
    return used.ring[seen++ % QSIZE].len;
}

/* Header, one data buffer (none if len is 0), status; returns the status
   byte. */
static u8 request(u32 type, u64 sector, u32 len, int device_writes)
{
    int n = 0;
    hdr.type = type;
    hdr.sector = sector;
    status = 0xff;
    set(n++, &hdr, sizeof(hdr), 0);
    if (len)
        set(n++, data, len, device_writes ? D_WRITE : 0);
    set(n++, &status, 1, D_WRITE);
    submit(n);
    return status;
}

static void report(const char *what, u8 st)
{
    puts(what);
    puts(" status=");
    putc((char)('0' + st % 10));
    puts("\n");
}

static void fill(u8 seed)
{
    for (int i = 0; i < 1024; i++)
        data[i] = (u8)(i * 7 + seed);
}

static void negotiate(void)
{
    if (rd(MAGIC) != 0x74726976 || rd(VERSION) != 2 || rd(DEVICE_ID) != 2)
        fail("no modern virtio-blk device");
    wr(STATUS, 0);
    wr(STATUS, S_ACK);
    wr(STATUS, S_ACK | S_DRIVER);
    wr(DEVICE_FEATURES_SEL, 0);
    u32 lo = rd(DEVICE_FEATURES);
    wr(DEVICE_FEATURES_SEL, 1);
    u32 hi = rd(DEVICE_FEATURES);
    if (!(lo & F_FLUSH) || !(hi & F_VERSION_1_HIGH))
        fail("FLUSH or VERSION_1 not offered");
    wr(DRIVER_FEATURES_SEL, 0);
    wr(DRIVER_FEATURES, F_FLUSH);
    wr(DRIVER_FEATURES_SEL, 1);
    wr(DRIVER_FEATURES, F_VERSION_1_HIGH);
    wr(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
    if (!(rd(STATUS) & S_FEATURES_OK))
        fail("FEATURES_OK refused");
    wr(QUEUE_SEL, 0);
    if (rd(QUEUE_NUM_MAX) < QSIZE)
        fail("queue too small");
    wr(QUEUE_NUM, QSIZE);
    wr(QUEUE_DESC, (u32)(u64)descs);
    wr(QUEUE_DESC + 4, 0);
    wr(QUEUE_AVAIL, (u32)(u64)&avail);
    wr(QUEUE_AVAIL + 4, 0);
    wr(QUEUE_USED, (u32)(u64)&used);
    wr(QUEUE_USED + 4, 0);
    wr(QUEUE_READY, 1);
    wr(STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    puts("features=");
    puthex(((u64)hi << 32) | lo);
    puts("\n");
}

void main(void *zero_page)
{
    (void)zero_page;
    negotiate();
    u64 capacity = mmio_read32(BASE + CONFIG) | ((u64)mmio_read32(BASE + CONFIG + 4) << 32);
    puts("capacity=");
    puthex(capacity);
    puts("\n");

    fill(1);
    report("write", request(T_OUT, 3, 1024, 0));
    for (int i = 0; i < 1024; i++)
        data[i] = 0;
    u8 st = request(T_IN, 3, 1024, 1);
    int same = 1;
    for (int i = 0; i < 1024; i++)
        same &= data[i] == (u8)(i * 7 + 1);
    report(same ? "read matches" : "read differs", st);
    report("flush", request(T_FLUSH, 0, 0, 0));
    report("get-id", request(T_GET_ID, 0, 20, 1));
    puts("id=");
    puts((const char *)data);
    puts("\n");
    report("past-end", request(T_IN, capacity, 512, 1));
    report("straddling-end", request(T_IN, capacity - 1, 1024, 1));
    /* The data buffer is not zero: a write that got through would show. */
    report("write-straddling-end", request(T_OUT, capacity - 1, 1024, 0));
    report("unknown-type", request(0x99, 0, 512, 1));

    /* A header shorter than 16 bytes. */
    hdr.type = T_IN;
    status = 0xff;
    set(0, &hdr, 8, 0);
    set(1, data, 512, D_WRITE);
    set(2, &status, 1, D_WRITE);
    submit(3);
    report("short-header", status);
    /* A chain whose next index points outside the queue: no status byte. */
    status = 0xff;
    set(0, &hdr, sizeof(hdr), D_NEXT);
    descs[0].next = 200;
    avail.ring[avail.idx % QSIZE] = 0;
    barrier();
    avail.idx++;
    barrier();
    wr(QUEUE_NOTIFY, 0);
    while (*(volatile u16 *)&used.idx == seen)
        ;
    puts("broken-chain used=");
    puthex(used.ring[seen++ % QSIZE].len);
    puts(status == 0xff ? " untouched\n" : " written\n");

    fill(0xa5);
    report("write-after", request(T_OUT, 5, 512, 0));
    puts("interrupt=");
    puthex(rd(INTERRUPT_STATUS));
    puts("\n");
    wr(INTERRUPT_ACK, 1);

    /* As Linux does it: sleep until the device interrupts. */
    irq_init(0x31);
    irq_route(5, 0x31);
    hdr.type = T_IN;
    hdr.sector = 5;
    status = 0xff;
    set(0, &hdr, sizeof(hdr), 0);
    set(1, data, 512, D_WRITE);
    set(2, &status, 1, D_WRITE);
    descs[0].flags |= D_NEXT;
    descs[0].next = 1;
    descs[1].flags |= D_NEXT;
    descs[1].next = 2;
    avail.ring[avail.idx % QSIZE] = 0;
    barrier();
    avail.idx++;
    barrier();
    u32 before = interrupts;
    wr(QUEUE_NOTIFY, 0);
    int woke = irq_wait(before);
    seen++;
    puts(woke ? "woken by the interrupt" : "no interrupt");
    report(data[1] == (u8)(7 + 0xa5) ? ", read matches" : ", read differs", status);
}
