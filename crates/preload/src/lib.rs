//! The vfio-dmabuf preload library: unmodified, dynamically linked
//! programs open `/dev/vfio/...`, issue VFIO and iommufd ioctls, map device
//! and DMA-buffer fds and take SIGBUS on revoke, against the emulated
//! devices of a vfio-dmabuf server (`vfio-dmabuf exec` loads it with
//! `LD_PRELOAD` and names the server in `VFIO_DMABUF_SOCKET`).
//!
//! What the kernel's syscall layer is to a VFIO program, this library is
//! to a program under `exec`: it recognises the calls that reach the VFIO
//! world (a served path, an object fd, a range of our mappings) and hands
//! them to the server over the [`wire`] protocol, or serves them in the
//! process (mappings and their faults, trapped register accesses, signal
//! handler chaining); every other call goes to the C library unchanged.
//!
//! # Interposed
//!
//! | calls | on what |
//! |---|---|
//! | `open`, `open64`, `__open_2`, `__open64_2`, `openat`, `openat64`, `__openat_2`, `__openat64_2`, `creat`, `creat64`, `fopen`, `fopen64` | served paths (`paths`) |
//! | `stat`, `stat64`, `lstat`, `lstat64`, `fstatat`, `fstatat64`, `__xstat*`, `__lxstat*`, `__fxstatat*`, `statx`, `access`, `faccessat`, `readlink`, `readlinkat`, `realpath`, `__realpath_chk`, `canonicalize_file_name` | served paths |
//! | `opendir`, `readdir`, `readdir64`, `closedir`, `dirfd`, `rewinddir`, `telldir`, `seekdir` | served directories (`dirs`) |
//! | `ioctl`, `close`, `pread`, `pread64`, `__pread_chk`, `__pread64_chk`, `pwrite`, `pwrite64` | object fds (`ioctl`, `fds`, `rw`) |
//! | `read`, `__read_chk`, `write`, `lseek`, `lseek64` | object fds we handed out (`fds`) |
//! | `mmap`, `mmap64`, `munmap`, `mremap`, `mprotect` | object fds and our mappings (`maps`) |
//! | `madvise` | our mappings: the kernel's answers for a VFIO/dma-buf VMA, never applied to the frames (`madvise`) |
//! | `sigaction`, `signal`, `bsd_signal`, `sysv_signal` | SIGBUS and SIGSEGV (`mm::probe::program_sigaction`) |
//! | `pthread_sigmask`, `sigprocmask` | SIGBUS stays deliverable (a register access traps with it); the program's wish is recorded per thread and reported back (`mm::probe::set_program_blocks`) |
//! | `vfork` | runs as `fork` |
//! | `wait`, `waitpid`, `wait3`, `wait4`, `waitid` | a reaped child's last closes have taken effect on return (`fds::after_reap`) |
//!
//! # Not interposed, and why
//!
//! - `dup`, `dup2`, `dup3`, `fcntl`: object fds are real descriptors, so
//!   the kernel's answers are right as they are.
//! - `ftruncate`, `fallocate`, `fcntl(F_ADD_SEALS/F_GET_SEALS)` and
//!   `open("/proc/self/fd/N")` of an object fd: the socket behind it
//!   answers as a dma-buf or VFIO device file does (`EINVAL`, `ENODEV`,
//!   `EINVAL`, `ENXIO`: none of them is a regular or shmem file, and their
//!   inodes cannot be opened), so nothing needs interposing. The frames a
//!   mapping is made of are closed once mapped, and the status page once
//!   mapped read-only: the program holds no file it could truncate, seal,
//!   punch or reopen. `process_madvise` (glibc calls the system call
//!   directly) is not seen; it needs `CAP_SYS_NICE` for another process.
//! - `fork`, `posix_spawn`: a `pthread_atfork` child handler starts the
//!   child's own state (new token, new connections, made lazily); a child
//!   that bypasses it is recognised by its pid. `posix_spawn` children run
//!   only the C library until `exec`, which loads the library again
//!   (`LD_PRELOAD` stays in the environment). Mappings a child inherits
//!   are taken over by the child handler before `fork` returns there
//!   (`inherit`): registered with the child's own fault engine and with
//!   the server, so revocation reaches them.
//! - `eventfd`: interrupt triggers are real eventfds, passed to the server
//!   as they are.
//! - `fstat` of an object fd shows the socket it is; `/proc/self/fd` links
//!   and `/proc/self/maps` show the real objects (sockets, memfds).
//! - `readv`/`preadv`/`recv` and friends on object fds, `scandir`, `ftw`,
//!   `fdopendir`, `close_range`, `openat2`: rare on VFIO objects, or run by
//!   the C library on its internal calls, which no preload library can
//!   see. Raw `syscall()` and static binaries are out of reach for the
//!   same reason (`exec` refuses static binaries).
//! - `read`/`write` of an object fd that we did not hand out ourselves (a
//!   `dup`, one received over a socket) reach the socket and consume its
//!   tag.
//!
//! x86-64 only (the register emulation, and the variadic calls' ABI).
#![deny(unsafe_code)]

mod abi;
mod dirs;
mod fds;
mod inherit;
mod ioctl;
mod madvise;
mod maps;
mod notify;
mod paths;
mod pool;
mod process;
mod rw;
mod stat;
mod vma;

/// The file name of this library as cargo builds it.
pub const LIBRARY_FILE: &str = "libvfio_dmabuf_preload.so";
