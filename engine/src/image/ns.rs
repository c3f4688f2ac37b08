//! Namespaces dumped with `-n`: `utsns.img` holds the tree's UTS namespace
//! (its host and NIS domain names). A kind's image is present exactly when
//! the dump took that namespace; the restore makes the root in a new
//! namespace of each kind present.
use serde::{Deserialize, Serialize};

use super::describe::{Describe, Obj};
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
    fn describe(&self) -> super::describe::Node {
        Obj::new().d("nodename", &self.nodename).d("domainname", &self.domainname).done()
    }
}
