//! One module per kernel object kind, each holding its dump side and its
//! restore side together (the image records live in `image/`).
//!
//! - [`task`]: per-task CPU, signal, timer, limit and credential state;
//! - [`thread`]: the other threads of a process;
//! - [`mm`]: the address space: VMAs and page data;
//! - [`hugetlb`]: MAP_HUGETLB memory's page sizes and the huge page pool;
//! - [`aio`]: native AIO contexts (io_setup) and their rings;
//! - [`sysv_shm`]: SysV shared memory segments the tree attached;
//! - [`reg_file`]: regular files, directories and device nodes reopened by path;
//! - [`tty`]: a shell job's terminal;
//! - [`pipe`]: pipes, their capacity and the bytes in flight;
//! - [`fifo`]: FIFOs (named pipes);
//! - [`unix_sk`]: unix sockets, their connections, backlogs and queues;
//! - [`eventfd`], [`epoll`], [`signalfd`], [`timerfd`], [`inotify`],
//!   [`fanotify`], [`memfd`], [`pidfd`]: event and special descriptors;
//! - [`inet_sk`]: TCP and UDP sockets, established connections with TCP_REPAIR;
//! - [`raw_sk`]: raw and ICMP ping sockets; [`packet_sk`]: packet sockets;
//! - [`file_lock`]: file locks and leases (refused);
//! - [`ns`]: namespaces (refused unless crtools' own);
//! - [`clone_share`]: address spaces, descriptor tables, fs info and signal
//!   handlers shared between processes (refused);
//! - [`cgroup`]: cgroup membership.
//!
//! Descriptor kinds are looked up in [`files::KINDS`]: adding a kind means one
//! module here and one row there.
pub mod aio;
pub mod cgroup;
pub mod clone_share;
pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod fifo;
pub mod file_lock;
pub mod files;
pub mod fown;
pub mod hugetlb;
pub mod inet_sk;
pub mod inotify;
pub mod ipc_ns;
pub mod keeper;
pub mod mem_track;
pub mod memfd;
pub mod mm;
pub mod netlink_sk;
pub mod ns;
pub mod packet_sk;
pub mod pidfd;
pub mod pipe;
pub mod raw_sk;
pub mod reg_file;
pub mod signalfd;
pub mod sysv_shm;
pub mod task;
pub mod thread;
pub mod timerfd;
pub mod tty;
pub mod unix_sk;
