/* Entry from the VMM's 64-bit boot set-up: RSI holds the zero page. Give C
   a stack, call main(zero_page), then reset through the i8042. */
    .section .text.start, "ax"
    .globl _start
_start:
    lea     stack_top(%rip), %rsp
    mov     %rsi, %rdi
    call    main
    .globl reset
reset:
    mov     $0xfe, %al
    outb    %al, $0x64
1:  hlt
    jmp     1b

    .bss
    .balign 16
    .skip   16384
stack_top:
