/* Release-wheel link of the CPU module (CMake option NUMKERN_MANYLINUX_COMPAT, docs/wheels.md).
 *
 * Built on a newer glibc (Debian 12: 2.36), the module would need symbol versions that
 * manylinux_2_28 (glibc 2.28) does not have.  For each symbol below the linker gets --wrap=<name>
 * (CMakeLists.txt reads the NK_OLD / NK_WRAP lines of this file), so every reference to <name>, in
 * numkern's objects and in the static libstdc++, becomes a reference to __wrap_<name>, defined here.
 *
 * NK_OLD(name, version): a jump to name@version, the old version that glibc 2.28 exports and every
 * later glibc keeps as a compat symbol.
 *   exp, log, pow (GLIBC_2.29 on newer glibc): the 2.2.5 versions are the same functions behind the
 *     errno-setting wrapper: same results (glibc 2.28 already has the 2.29 implementations).
 *   pthread_once (GLIBC_2.34, when libpthread moved into libc; from std::call_once): the 2.2.5
 *     version lives in libpthread.so.0 on glibc < 2.34, which the module links (DT_NEEDED) here.
 * NK_WRAP(name): defined below.
 *   __libc_single_threaded (data, GLIBC_2.32): libstdc++'s inline code reads it to skip atomic
 *     reference counting; here it is a constant 0 ("not known to be single-threaded"), so the
 *     atomic path always runs, as on glibc < 2.32.
 *   arc4random (GLIBC_2.36; std::random_device in the static libstdc++, which numkern never
 *     calls): 4 bytes from getentropy (GLIBC_2.25), abort() if that fails (arc4random cannot fail).
 *
 * To see what a new toolchain needs: link without this file and list the newer versions
 * (objdump -T _core*.so | grep -E 'GLIBC_2\.(29|3[0-9])').
 * tests/common/test_build.py::test_wheel_needs_no_newer_glibc_than_its_tag checks the result. */

#if defined(__x86_64__) && defined(__ELF__)

#define NK_OLD(name, version)                            \
        .text;                                           \
        .symver nk_old_##name, name@version;             \
        .globl __wrap_##name;                            \
        .hidden __wrap_##name;                           \
        .type __wrap_##name, @function;                  \
__wrap_##name:                                           \
        jmp nk_old_##name@PLT;                           \
        .size __wrap_##name, . - __wrap_##name
#define NK_WRAP(name)

NK_OLD(exp, GLIBC_2.2.5)
NK_OLD(log, GLIBC_2.2.5)
NK_OLD(pow, GLIBC_2.2.5)
NK_OLD(pthread_once, GLIBC_2.2.5)
NK_WRAP(__libc_single_threaded)
NK_WRAP(arc4random)

        .data
        .globl __wrap___libc_single_threaded
        .hidden __wrap___libc_single_threaded
        .type __wrap___libc_single_threaded, @object
        .size __wrap___libc_single_threaded, 1
__wrap___libc_single_threaded:
        .byte 0

        /* uint32_t __wrap_arc4random(void) */
        .text
        .globl __wrap_arc4random
        .hidden __wrap_arc4random
        .type __wrap_arc4random, @function
__wrap_arc4random:
        subq $24, %rsp                  /* 16-byte aligned stack for the calls */
        leaq 12(%rsp), %rdi             /* buffer */
        movl $4, %esi                   /* length */
        call getentropy@PLT             /* 0 on success */
        testl %eax, %eax
        jne 1f
        movl 12(%rsp), %eax
        addq $24, %rsp
        ret
1:      call abort@PLT
        .size __wrap_arc4random, . - __wrap_arc4random

#endif
        .section .note.GNU-stack,"",@progbits
