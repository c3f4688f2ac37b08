//! Namespaces dumped with `-n`: `utsns.img` holds the tree's UTS namespace
//! (its host and NIS domain names). A kind's image is present exactly when
//! the dump took that namespace; the restore makes the root in a new
//! namespace of each kind present.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Node, Obj};
use super::ipc::IpcPermEntry;
use super::RawStr;

/// The tree's UTS namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtsNsEntry {
    /// Host name (sethostname), as bytes.
    pub nodename: RawStr,
    /// NIS domain name (setdomainname), as bytes.
    pub domainname: RawStr,
}

impl Describe for UtsNsEntry {
    fn describe(&self) -> Node {
        Obj::new().d("nodename", &self.nodename).d("domainname", &self.domainname).done()
    }
}

/// The tree's IPC namespace (`-n ipc`), `ipcns.img`: its sysctls in the
/// head, then one entry per message queue and semaphore set. Its shared
/// memory segments are in `ipc-shm.img`, every one of the namespace, and
/// are made in the new namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcNsHead {
    /// (path under /proc/sys, value as read), written back in this order.
    pub sysctls: Vec<(String, String)>,
}

/// One message queue: its byte limit and its messages in queue order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgQueueEntry {
    pub perm: IpcPermEntry,
    /// msg_qbytes.
    pub qbytes: u64,
    /// (type, text) of each queued message.
    pub msgs: Vec<(i64, Vec<u8>)>,
}

/// One semaphore set and its values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SemSetEntry {
    pub perm: IpcPermEntry,
    pub values: Vec<u16>,
}

/// A record of `ipcns.img` after its head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpcObject {
    Msg(MsgQueueEntry),
    Sem(SemSetEntry),
}

impl Describe for IpcNsHead {
    fn describe(&self) -> Node {
        Node::Object(self.sysctls.iter().map(|(k, v)| (k.clone().into(), Node::Str(v.clone()))).collect())
    }
}

impl Describe for IpcObject {
    fn describe(&self) -> Node {
        match self {
            IpcObject::Msg(q) => q
                .perm
                .fields("id")
                .f("kind", "message queue")
                .f("qbytes", q.qbytes)
                .f(
                    "msgs",
                    Node::Array(
                        q.msgs
                            .iter()
                            .map(|(t, d)| Obj::new().f("type", Node::I64(*t)).f("text", Node::Bytes(d.clone())).done())
                            .collect(),
                    ),
                )
                .done(),
            IpcObject::Sem(s) => s
                .perm
                .fields("id")
                .f("kind", "semaphore set")
                .f("values", Node::Array(s.values.iter().map(|&v| Node::U64(v.into())).collect()))
                .done(),
        }
    }
}
