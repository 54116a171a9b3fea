//! A small synchronous rtnetlink client: links, addresses, XDP through `IFLA_XDP` and legacy TC
//! (`clsact` qdisc + `cls_bpf` in direct-action mode).
//!
//! The module has three layers:
//! - a pure encoder (`MsgBuilder`) for `nlmsghdr` + family header + (nested) attributes;
//! - a pure decoder ([`parse_replies`]) that turns a datagram into [`Message`]s and never panics,
//!   whatever the input (it is fuzzed);
//! - [`Netlink`], a `NETLINK_ROUTE` socket that sends one request at a time and collects its
//!   replies (matching sequence numbers, acks, multipart dumps, extended-ack error messages).
//!
//! A netlink socket operates in the network namespace of the thread that created it, so open
//! the [`Netlink`] after `setns()` when working inside another namespace.

use std::fmt;
use std::io;
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// ---------------------------------------------------------------------------------------------
// ABI constants (uapi: netlink.h, rtnetlink.h, if_link.h, if_addr.h, veth.h, pkt_sched.h,
// pkt_cls.h). Values only; see the kernel documentation for their meaning.
// ---------------------------------------------------------------------------------------------

const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_MULTI: u16 = 0x02;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x100 | 0x200; // ROOT | MATCH
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
// Flags of an NLMSG_ERROR / NLMSG_DONE reply.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;

const NLA_F_NESTED: u16 = 1 << 15;
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSGERR_ATTR_OFFS: u16 = 2;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETADDR: u16 = 22;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const RTM_GETTFILTER: u16 = 46;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_XDP: u16 = 43;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1 << 0;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// `IFLA_XDP_ATTACHED`: no XDP program on the interface.
pub const XDP_ATTACHED_NONE: u8 = 0;
/// `IFLA_XDP_ATTACHED`: a program runs in native (driver) mode.
pub const XDP_ATTACHED_DRV: u8 = 1;
/// `IFLA_XDP_ATTACHED`: a program runs in generic (skb) mode.
pub const XDP_ATTACHED_SKB: u8 = 2;
/// `IFLA_XDP_ATTACHED`: a program is offloaded to the NIC.
pub const XDP_ATTACHED_HW: u8 = 3;
/// `IFLA_XDP_ATTACHED`: programs in several modes; see the per-mode ids.
pub const XDP_ATTACHED_MULTI: u8 = 4;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_ID: u16 = 11;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1 << 0;

const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const TC_H_MAJ_MASK: u32 = 0xFFFF_0000;
const TC_H_MIN_MASK: u32 = 0x0000_FFFF;
const TC_H_MIN_INGRESS: u32 = 0xFFF2;
const TC_H_MIN_EGRESS: u32 = 0xFFF3;
const ETH_P_ALL: u16 = 0x0003;

/// Longest interface name the kernel accepts (IFNAMSIZ minus the NUL).
const IFNAME_MAX: usize = 15;
/// Cap for the cls_bpf filter name; the kernel has no hard limit but `tc` output stays readable.
const CLS_NAME_MAX: usize = 255;
/// How often a dump is retried when the kernel flags it as inconsistent (`NLM_F_DUMP_INTR`).
const DUMP_ATTEMPTS: usize = 5;
/// Safety net so a lost reply makes the call fail instead of hanging forever.
const RECV_TIMEOUT_SECS: u32 = 30;

fn tc_h_make(maj: u32, min: u32) -> u32 {
    (maj & TC_H_MAJ_MASK) | (min & TC_H_MIN_MASK)
}

fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// A failed netlink operation: what was attempted, the errno and the kernel's extended-ack text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetlinkError {
    /// The request and its subject, e.g. `RTM_SETLINK IFLA_XDP on ifindex 7`.
    pub op: String,
    /// Positive errno value.
    pub errno: i32,
    /// `NLMSGERR_ATTR_MSG` from the kernel's extended ack, when it sent one.
    pub extack: Option<String>,
}

impl NetlinkError {
    fn new(op: impl Into<String>, errno: i32) -> Self {
        Self {
            op: op.into(),
            errno,
            extack: None,
        }
    }

    /// The errno of the last failed libc call, attributed to `op`.
    fn last_os(op: impl Into<String>) -> Self {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        Self::new(op, errno)
    }

    /// Input the kernel would refuse anyway, rejected before sending (explained in `op`).
    fn invalid(op: &str, why: &str) -> Self {
        Self::new(format!("{op} ({why})"), libc::EINVAL)
    }

    /// A reply that does not follow the netlink wire format.
    fn malformed(detail: impl fmt::Display) -> Self {
        Self::new(format!("decoding netlink reply: {detail}"), libc::EBADMSG)
    }

    /// Prefixes `op` with the request during which this error happened.
    fn during(mut self, op: &str) -> Self {
        self.op = format!("{op}: {}", self.op);
        self
    }

    /// The errno (always set; positive).
    pub fn raw_os_error(&self) -> i32 {
        self.errno
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // io::Error renders "strerror (os error N)".
        write!(
            f,
            "{}: {}",
            self.op,
            io::Error::from_raw_os_error(self.errno)
        )?;
        if let Some(msg) = &self.extack {
            write!(f, ": kernel says: {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NetlinkError {}

impl From<NetlinkError> for io::Error {
    fn from(e: NetlinkError) -> Self {
        let kind = io::Error::from_raw_os_error(e.errno).kind();
        io::Error::new(kind, e)
    }
}

// ---------------------------------------------------------------------------------------------
// Family headers
// ---------------------------------------------------------------------------------------------

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([b[0], b[1]]))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    read_u32(buf, at).map(|v| v as i32)
}

/// `struct nlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NlMsgHeader {
    /// Length of the message including this header.
    pub len: u32,
    /// `NLMSG_*` or `RTM_*`.
    pub msg_type: u16,
    /// `NLM_F_*`.
    pub flags: u16,
    /// Sequence number (echoed by the kernel).
    pub seq: u32,
    /// Port id of the requester.
    pub pid: u32,
}

impl NlMsgHeader {
    fn parse(buf: &[u8]) -> Option<Self> {
        Some(Self {
            len: read_u32(buf, 0)?,
            msg_type: read_u16(buf, 4)?,
            flags: read_u16(buf, 6)?,
            seq: read_u32(buf, 8)?,
            pid: read_u32(buf, 12)?,
        })
    }
}

/// `struct ifinfomsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfInfoMsg {
    /// Address family (`AF_UNSPEC` for link requests).
    pub family: u8,
    /// `ARPHRD_*`.
    pub link_type: u16,
    /// Interface index.
    pub index: i32,
    /// `IFF_*` flags.
    pub flags: u32,
    /// Mask of the `IFF_*` flags to change.
    pub change: u32,
}

impl IfInfoMsg {
    const LEN: usize = 16;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[2..4].copy_from_slice(&self.link_type.to_ne_bytes());
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.change.to_ne_bytes());
        b
    }

    fn parse(buf: &[u8]) -> Option<Self> {
        Some(Self {
            family: *buf.first()?,
            link_type: read_u16(buf, 2)?,
            index: read_i32(buf, 4)?,
            flags: read_u32(buf, 8)?,
            change: read_u32(buf, 12)?,
        })
    }
}

/// `struct ifaddrmsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IfAddrMsg {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Prefix length of the address.
    pub prefix_len: u8,
    /// `IFA_F_*` (the low 8 bits).
    pub flags: u8,
    /// `RT_SCOPE_*`.
    pub scope: u8,
    /// Interface index.
    pub index: u32,
}

impl IfAddrMsg {
    const LEN: usize = 8;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[1] = self.prefix_len;
        b[2] = self.flags;
        b[3] = self.scope;
        b[4..8].copy_from_slice(&self.index.to_ne_bytes());
        b
    }

    fn parse(buf: &[u8]) -> Option<Self> {
        Some(Self {
            family: *buf.first()?,
            prefix_len: *buf.get(1)?,
            flags: *buf.get(2)?,
            scope: *buf.get(3)?,
            index: read_u32(buf, 4)?,
        })
    }
}

/// `struct tcmsg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcMsg {
    /// Address family (`AF_UNSPEC`).
    pub family: u8,
    /// Interface index.
    pub ifindex: i32,
    /// Qdisc / class / filter handle.
    pub handle: u32,
    /// Parent handle.
    pub parent: u32,
    /// For filters: priority in the upper 16 bits, protocol (network order) in the lower.
    pub info: u32,
}

impl TcMsg {
    const LEN: usize = 20;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.family;
        b[4..8].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[8..12].copy_from_slice(&self.handle.to_ne_bytes());
        b[12..16].copy_from_slice(&self.parent.to_ne_bytes());
        b[16..20].copy_from_slice(&self.info.to_ne_bytes());
        b
    }

    fn parse(buf: &[u8]) -> Option<Self> {
        Some(Self {
            family: *buf.first()?,
            ifindex: read_i32(buf, 4)?,
            handle: read_u32(buf, 8)?,
            parent: read_u32(buf, 12)?,
            info: read_u32(buf, 16)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

/// Builds one netlink request: header, family header and attributes, 4-byte aligned.
///
/// Lengths of the message and of open nests are patched in when they are closed, so callers
/// only append.
#[derive(Debug, Clone)]
pub(crate) struct MsgBuilder {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl MsgBuilder {
    pub(crate) fn new(msg_type: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // len, patched in finish()
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq, set in finish()
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid 0: the kernel fills in ours
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    fn pad(&mut self) {
        let aligned = align4(self.buf.len());
        self.buf.resize(aligned, 0);
    }

    /// Appends a fixed family header (ifinfomsg, tcmsg, ...) or any raw bytes, then pads.
    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    /// Appends one attribute; `nla_len` counts header + payload, the padding follows it.
    pub(crate) fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        // Requests are built from validated, short inputs, so this never saturates in practice.
        let len = u16::try_from(NLA_HDRLEN + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    pub(crate) fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    pub(crate) fn attr_i32(&mut self, kind: u16, v: i32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// A NUL-terminated string attribute (callers reject interior NULs).
    pub(crate) fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(kind, &v)
    }

    /// Opens a nested attribute; everything appended until [`Self::end_nested`] goes inside.
    pub(crate) fn begin_nested(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub(crate) fn end_nested(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            // Children are padded already, so the nest's length is aligned as well.
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// Closes any nest left open, stamps length and sequence number, returns the bytes.
    pub(crate) fn finish(mut self, seq: u32) -> Vec<u8> {
        while !self.nests.is_empty() {
            self.end_nested();
        }
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

/// One attribute of a reply (payload copied out, padding dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Attribute type without the `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` bits.
    pub kind: u16,
    /// Whether the sender set `NLA_F_NESTED` (the kernel does not always set it).
    pub nested_flag: bool,
    /// Payload.
    pub data: Vec<u8>,
}

impl Attr {
    /// The payload as a u8, if it is exactly one byte.
    pub fn as_u8(&self) -> Option<u8> {
        match self.data.as_slice() {
            [b] => Some(*b),
            _ => None,
        }
    }

    /// The payload as a native-endian u32, if it is exactly four bytes.
    pub fn as_u32(&self) -> Option<u32> {
        if self.data.len() == 4 {
            read_u32(&self.data, 0)
        } else {
            None
        }
    }

    /// The payload as a string: up to the first NUL, invalid UTF-8 replaced.
    pub fn as_string(&self) -> String {
        let end = self
            .data
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.data.len());
        String::from_utf8_lossy(&self.data[..end]).into_owned()
    }

    /// Parses the payload as a list of attributes.
    ///
    /// # Errors
    /// `EBADMSG` when the payload is not a well-formed attribute list.
    pub fn nested(&self) -> Result<Vec<Attr>, NetlinkError> {
        parse_attrs(&self.data).map_err(|e| {
            NetlinkError::malformed(format_args!("inside attribute type {}: {e}", self.kind))
        })
    }
}

/// Parses a sequence of attributes. Every length is checked before it is used.
///
/// # Errors
/// `EBADMSG` when an attribute header is truncated or a length is out of bounds.
pub fn parse_attrs(buf: &[u8]) -> Result<Vec<Attr>, NetlinkError> {
    let mut out = Vec::new();
    let mut rest = buf;
    let mut offset = 0usize;
    while !rest.is_empty() {
        let (Some(len), Some(raw_kind)) = (read_u16(rest, 0), read_u16(rest, 2)) else {
            return Err(NetlinkError::malformed(format_args!(
                "{} stray bytes at attribute offset {offset}",
                rest.len()
            )));
        };
        let len = usize::from(len);
        let Some(data) = rest.get(NLA_HDRLEN..len) else {
            return Err(NetlinkError::malformed(format_args!(
                "attribute at offset {offset} has length {len} with {} bytes left",
                rest.len()
            )));
        };
        out.push(Attr {
            kind: raw_kind & NLA_TYPE_MASK,
            nested_flag: raw_kind & NLA_F_NESTED != 0,
            data: data.to_vec(),
        });
        // The last attribute may omit its padding.
        let step = align4(len).min(rest.len());
        rest = rest.get(step..).unwrap_or_default();
        offset += step;
    }
    Ok(out)
}

fn find_attr(attrs: &[Attr], kind: u16) -> Option<&Attr> {
    attrs.iter().find(|a| a.kind == kind)
}

/// Status carried by `NLMSG_ERROR` (an ack when `errno` is 0) and by `NLMSG_DONE`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorReply {
    /// Positive errno, 0 for success.
    pub errno: i32,
    /// `NLMSGERR_ATTR_MSG`: the kernel's explanation (or a warning on success).
    pub extack: Option<String>,
    /// `NLMSGERR_ATTR_OFFS`: byte offset of the offending attribute in the request.
    pub extack_offset: Option<u32>,
    /// The header of the request this answers (`NLMSG_ERROR` only).
    pub request: Option<NlMsgHeader>,
}

/// Decoded payload of a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    /// `NLMSG_ERROR`: an error, or an ack when `errno` is 0.
    Error(ErrorReply),
    /// `NLMSG_DONE`: end of a dump, with its status.
    Done(ErrorReply),
    /// `NLMSG_NOOP`.
    Noop,
    /// `NLMSG_OVERRUN`.
    Overrun,
    /// `RTM_*LINK`.
    Link {
        /// Fixed header.
        info: IfInfoMsg,
        /// Top-level attributes.
        attrs: Vec<Attr>,
    },
    /// `RTM_*ADDR`.
    Addr {
        /// Fixed header.
        info: IfAddrMsg,
        /// Top-level attributes.
        attrs: Vec<Attr>,
    },
    /// `RTM_*QDISC`, `RTM_*TCLASS`, `RTM_*TFILTER`.
    Tc {
        /// Fixed header.
        info: TcMsg,
        /// Top-level attributes.
        attrs: Vec<Attr>,
    },
    /// Any other message type, payload undecoded.
    Other(Vec<u8>),
}

/// One netlink message of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The `nlmsghdr`.
    pub header: NlMsgHeader,
    /// The decoded payload.
    pub body: MessageBody,
}

/// Splits a received datagram into messages and decodes each. Pure and panic-free on any input.
///
/// # Errors
/// `EBADMSG` (with the offending offset in `op`) when a header, family header or attribute is
/// truncated or a length field points outside the buffer.
pub fn parse_replies(buf: &[u8]) -> Result<Vec<Message>, NetlinkError> {
    let mut out = Vec::new();
    let mut rest = buf;
    let mut offset = 0usize;
    while !rest.is_empty() {
        let header = NlMsgHeader::parse(rest).ok_or_else(|| {
            NetlinkError::malformed(format_args!(
                "{} stray bytes at message offset {offset}",
                rest.len()
            ))
        })?;
        let len = header.len as usize;
        let payload = match rest.get(NLMSG_HDRLEN..len) {
            Some(p) if len >= NLMSG_HDRLEN => p,
            _ => {
                return Err(NetlinkError::malformed(format_args!(
                    "message at offset {offset} has length {len} with {} bytes left",
                    rest.len()
                )))
            }
        };
        let body = parse_body(&header, payload).map_err(|e| {
            e.during(&format!(
                "message type {} at offset {offset}",
                header.msg_type
            ))
        })?;
        out.push(Message { header, body });
        let step = align4(len).min(rest.len());
        rest = rest.get(step..).unwrap_or_default();
        offset += step;
    }
    Ok(out)
}

fn truncated(what: &str) -> NetlinkError {
    NetlinkError::malformed(format_args!("truncated {what}"))
}

fn parse_body(header: &NlMsgHeader, payload: &[u8]) -> Result<MessageBody, NetlinkError> {
    Ok(match header.msg_type {
        NLMSG_NOOP => MessageBody::Noop,
        NLMSG_OVERRUN => MessageBody::Overrun,
        NLMSG_ERROR => MessageBody::Error(parse_error(header.flags, payload)?),
        NLMSG_DONE => MessageBody::Done(parse_done(header.flags, payload)),
        RTM_NEWLINK..=RTM_SETLINK => MessageBody::Link {
            info: IfInfoMsg::parse(payload).ok_or_else(|| truncated("ifinfomsg"))?,
            attrs: parse_attrs(payload.get(IfInfoMsg::LEN..).unwrap_or_default())?,
        },
        RTM_NEWADDR..=RTM_GETADDR => MessageBody::Addr {
            info: IfAddrMsg::parse(payload).ok_or_else(|| truncated("ifaddrmsg"))?,
            attrs: parse_attrs(payload.get(IfAddrMsg::LEN..).unwrap_or_default())?,
        },
        RTM_NEWQDISC..=RTM_GETTFILTER => MessageBody::Tc {
            info: TcMsg::parse(payload).ok_or_else(|| truncated("tcmsg"))?,
            attrs: parse_attrs(payload.get(TcMsg::LEN..).unwrap_or_default())?,
        },
        _ => MessageBody::Other(payload.to_vec()),
    })
}

fn errno_from_code(code: i32) -> i32 {
    // The kernel sends -errno; tolerate anything else without overflowing.
    if code < 0 {
        code.checked_neg().unwrap_or(i32::MAX)
    } else {
        code
    }
}

/// Reads the extended-ack TLVs. They only explain an error we already have, so a malformed
/// list is ignored rather than allowed to mask the errno.
fn parse_ext_ack(flags: u16, tlvs: &[u8], reply: &mut ErrorReply) {
    if flags & NLM_F_ACK_TLVS == 0 {
        return;
    }
    let Ok(attrs) = parse_attrs(tlvs) else {
        log::debug!("ignoring malformed extended ack TLVs");
        return;
    };
    reply.extack = find_attr(&attrs, NLMSGERR_ATTR_MSG)
        .map(Attr::as_string)
        .filter(|s| !s.is_empty());
    reply.extack_offset = find_attr(&attrs, NLMSGERR_ATTR_OFFS).and_then(Attr::as_u32);
}

fn parse_error(flags: u16, payload: &[u8]) -> Result<ErrorReply, NetlinkError> {
    let code = read_i32(payload, 0).ok_or_else(|| truncated("error code"))?;
    let request = NlMsgHeader::parse(payload.get(4..).unwrap_or_default())
        .ok_or_else(|| truncated("echoed request header"))?;
    // Without NLM_F_CAPPED the whole request is echoed; the TLVs follow it, aligned.
    let tlv_start = if flags & NLM_F_CAPPED != 0 {
        4 + NLMSG_HDRLEN
    } else {
        4usize.saturating_add(align4(request.len as usize))
    };
    let mut reply = ErrorReply {
        errno: errno_from_code(code),
        request: Some(request),
        ..ErrorReply::default()
    };
    parse_ext_ack(
        flags,
        payload.get(tlv_start..).unwrap_or_default(),
        &mut reply,
    );
    Ok(reply)
}

fn parse_done(flags: u16, payload: &[u8]) -> ErrorReply {
    // Old kernels send an empty NLMSG_DONE; newer ones an int status (+ TLVs on error).
    let mut reply = ErrorReply {
        errno: read_i32(payload, 0).map_or(0, errno_from_code),
        ..ErrorReply::default()
    };
    parse_ext_ack(flags, payload.get(4..).unwrap_or_default(), &mut reply);
    reply
}

/// XDP state of an interface, from `IFLA_XDP` of an `RTM_NEWLINK` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XdpState {
    /// `XDP_ATTACHED_*` ([`XDP_ATTACHED_NONE`] ... [`XDP_ATTACHED_MULTI`]).
    pub attached: u8,
    /// `IFLA_XDP_PROG_ID`: the program id when exactly one mode is in use.
    pub prog_id: Option<u32>,
    /// `IFLA_XDP_DRV_PROG_ID`: program attached in native mode.
    pub drv_prog_id: Option<u32>,
    /// `IFLA_XDP_SKB_PROG_ID`: program attached in generic mode.
    pub skb_prog_id: Option<u32>,
    /// `IFLA_XDP_HW_PROG_ID`: program offloaded to hardware.
    pub hw_prog_id: Option<u32>,
}

/// A `cls_bpf` filter on a clsact hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClsBpfFilter {
    /// Filter priority (`pref` in `tc`).
    pub prio: u16,
    /// Filter handle.
    pub handle: u32,
    /// `TCA_BPF_ID`: id of the attached program.
    pub prog_id: Option<u32>,
    /// `TCA_BPF_NAME`.
    pub name: Option<String>,
    /// Whether `TCA_BPF_FLAG_ACT_DIRECT` is set.
    pub direct_action: bool,
}

/// An interface's index and Ethernet address (`None` for a device without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddr {
    /// Interface index.
    pub ifindex: u32,
    /// `IFLA_ADDRESS`, when it is 6 bytes long.
    pub mac: Option<[u8; 6]>,
}

impl Message {
    /// `IFLA_IFNAME` of a link message.
    pub fn link_name(&self) -> Option<String> {
        match &self.body {
            MessageBody::Link { attrs, .. } => find_attr(attrs, IFLA_IFNAME).map(Attr::as_string),
            _ => None,
        }
    }

    /// `IFLA_ADDRESS` of a link message when it is a 6-byte (Ethernet) address.
    pub fn link_mac(&self) -> Option<[u8; 6]> {
        match &self.body {
            MessageBody::Link { attrs, .. } => {
                find_attr(attrs, IFLA_ADDRESS).and_then(|a| a.data.as_slice().try_into().ok())
            }
            _ => None,
        }
    }

    /// `TCA_KIND` of a qdisc / class / filter message.
    pub fn tc_kind(&self) -> Option<String> {
        match &self.body {
            MessageBody::Tc { attrs, .. } => find_attr(attrs, TCA_KIND).map(Attr::as_string),
            _ => None,
        }
    }

    /// The XDP state reported by a link message (`None` for other messages).
    ///
    /// # Errors
    /// `EBADMSG` when `IFLA_XDP` is not a well-formed nest.
    pub fn xdp_state(&self) -> Result<Option<XdpState>, NetlinkError> {
        let MessageBody::Link { attrs, .. } = &self.body else {
            return Ok(None);
        };
        let Some(xdp) = find_attr(attrs, IFLA_XDP) else {
            return Ok(Some(XdpState::default()));
        };
        let nest = xdp.nested()?;
        let id = |kind| find_attr(&nest, kind).and_then(Attr::as_u32);
        Ok(Some(XdpState {
            attached: find_attr(&nest, IFLA_XDP_ATTACHED)
                .and_then(Attr::as_u8)
                .unwrap_or(XDP_ATTACHED_NONE),
            prog_id: id(IFLA_XDP_PROG_ID),
            drv_prog_id: id(IFLA_XDP_DRV_PROG_ID),
            skb_prog_id: id(IFLA_XDP_SKB_PROG_ID),
            hw_prog_id: id(IFLA_XDP_HW_PROG_ID),
        }))
    }

    /// The cls_bpf filter described by a filter message; `None` for other kinds and for the
    /// per-priority entries (handle 0) a dump also contains.
    ///
    /// # Errors
    /// `EBADMSG` when `TCA_OPTIONS` is not a well-formed nest.
    pub fn cls_bpf_filter(&self) -> Result<Option<ClsBpfFilter>, NetlinkError> {
        let MessageBody::Tc { info, attrs } = &self.body else {
            return Ok(None);
        };
        let is_bpf = find_attr(attrs, TCA_KIND).is_some_and(|k| k.as_string() == "bpf");
        if !is_bpf || info.handle == 0 {
            return Ok(None);
        }
        let opts = match find_attr(attrs, TCA_OPTIONS) {
            Some(a) => a.nested()?,
            None => Vec::new(),
        };
        let flags = find_attr(&opts, TCA_BPF_FLAGS)
            .and_then(Attr::as_u32)
            .unwrap_or(0);
        Ok(Some(ClsBpfFilter {
            prio: (info.info >> 16) as u16,
            handle: info.handle,
            prog_id: find_attr(&opts, TCA_BPF_ID).and_then(Attr::as_u32),
            name: find_attr(&opts, TCA_BPF_NAME).map(Attr::as_string),
            direct_action: flags & TCA_BPF_FLAG_ACT_DIRECT != 0,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Socket
// ---------------------------------------------------------------------------------------------

/// XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// Driver mode (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic skb mode (`XDP_FLAGS_SKB_MODE`).
    Generic,
}

impl XdpMode {
    fn flag(self) -> u32 {
        match self {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// clsact hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcDirection {
    /// `TC_H_MIN_INGRESS`.
    Ingress,
    /// `TC_H_MIN_EGRESS`.
    Egress,
}

impl TcDirection {
    fn parent(self) -> u32 {
        let min = match self {
            TcDirection::Ingress => TC_H_MIN_INGRESS,
            TcDirection::Egress => TC_H_MIN_EGRESS,
        };
        tc_h_make(TC_H_CLSACT, min)
    }
}

impl fmt::Display for TcDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcDirection::Ingress => "ingress",
            TcDirection::Egress => "egress",
        })
    }
}

fn check_ifname(op: &str, name: &str) -> Result<(), NetlinkError> {
    if name.is_empty() || name.len() > IFNAME_MAX || name.contains('\0') {
        return Err(NetlinkError::invalid(
            op,
            "interface names are 1 to 15 bytes without NUL",
        ));
    }
    Ok(())
}

fn ifindex_i32(op: &str, ifindex: u32) -> Result<i32, NetlinkError> {
    i32::try_from(ifindex).map_err(|_| NetlinkError::invalid(op, "ifindex out of range"))
}

fn filter_info(prio: u16) -> u32 {
    // tcm_info = TC_H_MAKE(prio << 16, protocol), protocol in network byte order.
    (u32::from(prio) << 16) | u32::from(ETH_P_ALL.to_be())
}

/// A `NETLINK_ROUTE` socket bound to the network namespace of the thread that opened it.
///
/// Requests are synchronous: each method sends one request (with `NLM_F_ACK`) and reads replies
/// until the kernel's ack, error, or the `NLMSG_DONE` of a dump.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl AsFd for Netlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn setsockopt<T>(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: &T) -> bool {
    // SAFETY: `value` is a live, initialised `T` and the length passed is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    rc == 0
}

impl Netlink {
    /// Opens a rtnetlink socket in the calling thread's network namespace, with extended acks
    /// and capped error echoes enabled.
    ///
    /// # Errors
    /// The errno of `socket`, `setsockopt` or `bind`.
    pub fn open() -> Result<Self, NetlinkError> {
        // SAFETY: plain syscall without pointer arguments.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(NetlinkError::last_os("socket(AF_NETLINK, NETLINK_ROUTE)"));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        if !setsockopt(fd.as_fd(), SOL_NETLINK, NETLINK_EXT_ACK, &one) {
            return Err(NetlinkError::last_os("setsockopt(NETLINK_EXT_ACK)"));
        }
        // Only the echoed header is needed to match errors; capping keeps error replies small.
        if !setsockopt(fd.as_fd(), SOL_NETLINK, NETLINK_CAP_ACK, &one) {
            return Err(NetlinkError::last_os("setsockopt(NETLINK_CAP_ACK)"));
        }
        let timeout = libc::timeval {
            // `as _`: time_t is 64-bit on glibc and (deprecated-as-named) on musl.
            tv_sec: RECV_TIMEOUT_SECS as _,
            tv_usec: 0,
        };
        if !setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout) {
            return Err(NetlinkError::last_os("setsockopt(SO_RCVTIMEO)"));
        }
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a valid sockaddr_nl and the length matches it.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(NetlinkError::last_os("bind(AF_NETLINK)"));
        }
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: `bytes` and `kernel` are valid for the lengths passed.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if n >= 0 {
                return if n as usize == bytes.len() {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(libc::EMSGSIZE))
                };
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Receives one datagram from the kernel into `self.buf`, growing it to fit; returns its
    /// length. Datagrams from other senders (user-space processes) are dropped.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // Peek with MSG_TRUNC to learn the datagram's full size without consuming it.
            // SAFETY: the buffer is valid for writes of `self.buf.len()` bytes.
            let size = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_PEEK | libc::MSG_TRUNC,
                )
            };
            if size < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let size = size as usize;
            if size > self.buf.len() {
                self.buf.resize(size, 0);
            }
            // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut from_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: buffer, address and address length are valid for the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if from.nl_pid != 0 {
                log::debug!("dropping netlink datagram from port {}", from.nl_pid);
                continue;
            }
            return Ok(n as usize);
        }
    }

    /// Sends `msg` and collects the replies that belong to it (by sequence number). Non-dump
    /// requests end at the ack; dumps at `NLMSG_DONE`. Returns the data messages.
    fn transact(
        &mut self,
        op: &str,
        msg: MsgBuilder,
        dump: bool,
    ) -> Result<(Vec<Message>, bool), NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        self.send(&bytes).map_err(|e| {
            NetlinkError::new(
                format!("{op}: sending request"),
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        })?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self.recv().map_err(|e| {
                NetlinkError::new(
                    format!("{op}: receiving reply"),
                    e.raw_os_error().unwrap_or(libc::EIO),
                )
            })?;
            let msgs =
                parse_replies(self.buf.get(..n).unwrap_or_default()).map_err(|e| e.during(op))?;
            for m in msgs {
                // Leftovers of an earlier request that was abandoned half-way (e.g. a dump that
                // failed to decode) carry an older sequence number.
                if m.header.seq != seq {
                    log::debug!(
                        "{op}: dropping netlink message type {} with stale seq {} (want {seq})",
                        m.header.msg_type,
                        m.header.seq
                    );
                    continue;
                }
                interrupted |= m.header.flags & NLM_F_DUMP_INTR != 0;
                match m.body {
                    MessageBody::Error(reply) | MessageBody::Done(reply) if reply.errno != 0 => {
                        return Err(NetlinkError {
                            op: op.to_owned(),
                            errno: reply.errno,
                            extack: reply.extack,
                        });
                    }
                    MessageBody::Error(reply) => {
                        if let Some(warning) = reply.extack {
                            log::warn!("{op}: kernel says: {warning}");
                        }
                        return Ok((out, interrupted));
                    }
                    MessageBody::Done(_) => {
                        if dump {
                            return Ok((out, interrupted));
                        }
                        // A non-dump request ends with its ack, which is still to come.
                    }
                    MessageBody::Noop => {}
                    MessageBody::Overrun => {
                        return Err(NetlinkError::new(
                            format!("{op}: netlink overrun"),
                            libc::ENOBUFS,
                        ));
                    }
                    _ => {
                        if !dump && m.header.flags & NLM_F_MULTI != 0 {
                            log::debug!("{op}: unexpected multipart reply to a non-dump request");
                        }
                        out.push(m);
                    }
                }
            }
        }
    }

    /// Sends a request that expects only an ack.
    fn request(&mut self, op: &str, msg: MsgBuilder) -> Result<(), NetlinkError> {
        self.transact(op, msg, false).map(|_| ())
    }

    /// Sends a request that expects data messages followed by an ack.
    fn get(&mut self, op: &str, msg: MsgBuilder) -> Result<Vec<Message>, NetlinkError> {
        self.transact(op, msg, false).map(|(msgs, _)| msgs)
    }

    /// Runs a dump, retrying while the kernel reports it inconsistent.
    fn dump(&mut self, op: &str, msg: MsgBuilder) -> Result<Vec<Message>, NetlinkError> {
        for _ in 0..DUMP_ATTEMPTS {
            let (msgs, interrupted) = self.transact(op, msg.clone(), true)?;
            if !interrupted {
                return Ok(msgs);
            }
            log::debug!("{op}: dump interrupted by a concurrent change, retrying");
        }
        Err(NetlinkError::new(
            format!("{op}: dump kept being interrupted by concurrent changes"),
            libc::EAGAIN,
        ))
    }

    fn getlink(
        &mut self,
        op: &str,
        info: IfInfoMsg,
        name: Option<&str>,
    ) -> Result<Option<Message>, NetlinkError> {
        let mut msg = MsgBuilder::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK);
        msg.raw(&info.to_bytes());
        if let Some(name) = name {
            msg.attr_str(IFLA_IFNAME, name);
        }
        msg.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        match self.get(op, msg) {
            Ok(msgs) => Ok(msgs
                .into_iter()
                .find(|m| matches!(m.body, MessageBody::Link { .. }))),
            Err(e) if e.errno == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks up an interface index by name (`RTM_GETLINK` with `IFLA_IFNAME`).
    ///
    /// # Errors
    /// `EINVAL` for names the kernel cannot hold; the kernel's errno otherwise. A missing
    /// interface is `Ok(None)`, not an error.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let op = format!("RTM_GETLINK for interface '{name}'");
        check_ifname(&op, name)?;
        let reply = self.getlink(&op, IfInfoMsg::default(), Some(name))?;
        Ok(reply.and_then(|m| match m.body {
            MessageBody::Link { info, .. } => u32::try_from(info.index).ok(),
            _ => None,
        }))
    }

    /// Looks up an interface name by index.
    ///
    /// # Errors
    /// The kernel's errno; a missing interface is `Ok(None)`.
    pub fn link_name(&mut self, ifindex: u32) -> Result<Option<String>, NetlinkError> {
        let op = format!("RTM_GETLINK for ifindex {ifindex}");
        let index = ifindex_i32(&op, ifindex)?;
        let info = IfInfoMsg {
            index,
            ..IfInfoMsg::default()
        };
        Ok(self.getlink(&op, info, None)?.and_then(|m| m.link_name()))
    }

    /// Looks up an interface's index and Ethernet address by name (`None` for the address of
    /// a device without one, e.g. a tunnel).
    ///
    /// # Errors
    /// `EINVAL` for names the kernel cannot hold; the kernel's errno otherwise. A missing
    /// interface is `Ok(None)`, not an error.
    pub fn link_index_mac(&mut self, name: &str) -> Result<Option<LinkAddr>, NetlinkError> {
        let op = format!("RTM_GETLINK for interface '{name}'");
        check_ifname(&op, name)?;
        let reply = self.getlink(&op, IfInfoMsg::default(), Some(name))?;
        Ok(reply.and_then(|m| {
            let mac = m.link_mac();
            match m.body {
                MessageBody::Link { info, .. } => u32::try_from(info.index)
                    .ok()
                    .map(|ifindex| LinkAddr { ifindex, mac }),
                _ => None,
            }
        }))
    }

    /// Sets `IFF_UP` on an interface.
    ///
    /// # Errors
    /// The kernel's errno (e.g. `ENODEV`).
    pub fn link_set_up(&mut self, ifindex: u32) -> Result<(), NetlinkError> {
        let op = format!("RTM_SETLINK IFF_UP on ifindex {ifindex}");
        let info = IfInfoMsg {
            index: ifindex_i32(&op, ifindex)?,
            flags: libc::IFF_UP as u32,
            change: libc::IFF_UP as u32,
            ..IfInfoMsg::default()
        };
        let mut msg = MsgBuilder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
        msg.raw(&info.to_bytes());
        self.request(&op, msg)
    }

    /// Creates a veth pair `name` <-> `peer`; the peer is created directly in the namespace of
    /// `peer_netns_fd` when given.
    ///
    /// # Errors
    /// `EINVAL` for invalid names; the kernel's errno otherwise (`EEXIST` when a name is taken).
    pub fn link_add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns_fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), NetlinkError> {
        let op = format!("RTM_NEWLINK veth '{name}' with peer '{peer}'");
        check_ifname(&op, name)?;
        check_ifname(&op, peer)?;
        let mut msg = MsgBuilder::new(
            RTM_NEWLINK,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        );
        msg.raw(&IfInfoMsg::default().to_bytes())
            .attr_str(IFLA_IFNAME, name)
            .begin_nested(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .begin_nested(IFLA_INFO_DATA)
            .begin_nested(VETH_INFO_PEER)
            // The peer's attributes are preceded by its own ifinfomsg.
            .raw(&IfInfoMsg::default().to_bytes())
            .attr_str(IFLA_IFNAME, peer);
        if let Some(fd) = peer_netns_fd {
            msg.attr_u32(IFLA_NET_NS_FD, fd.as_raw_fd() as u32);
        }
        msg.end_nested().end_nested().end_nested();
        self.request(&op, msg)
    }

    /// Moves an interface into the network namespace `netns_fd` refers to.
    ///
    /// # Errors
    /// The kernel's errno (e.g. `EEXIST` when the name is taken there).
    pub fn link_set_netns(
        &mut self,
        ifindex: u32,
        netns_fd: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        let op = format!("RTM_SETLINK IFLA_NET_NS_FD on ifindex {ifindex}");
        let info = IfInfoMsg {
            index: ifindex_i32(&op, ifindex)?,
            ..IfInfoMsg::default()
        };
        let mut msg = MsgBuilder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
        msg.raw(&info.to_bytes())
            .attr_u32(IFLA_NET_NS_FD, netns_fd.as_raw_fd() as u32);
        self.request(&op, msg)
    }

    /// Deletes an interface (for a veth, both ends).
    ///
    /// # Errors
    /// The kernel's errno (`ENODEV` when it does not exist).
    pub fn link_del(&mut self, ifindex: u32) -> Result<(), NetlinkError> {
        let op = format!("RTM_DELLINK ifindex {ifindex}");
        let info = IfInfoMsg {
            index: ifindex_i32(&op, ifindex)?,
            ..IfInfoMsg::default()
        };
        let mut msg = MsgBuilder::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK);
        msg.raw(&info.to_bytes());
        self.request(&op, msg)
    }

    /// Adds a default route (IPv4 or IPv6, by the gateway's family) via `gateway` to the
    /// main table.
    ///
    /// # Errors
    /// The kernel's errno (`ENETUNREACH` when no interface reaches the gateway, `EEXIST`
    /// when there is a default route already).
    pub fn route_add_default(&mut self, gateway: IpAddr) -> Result<(), NetlinkError> {
        /// `RTA_GATEWAY`.
        const RTA_GATEWAY: u16 = 5;
        let op = format!("RTM_NEWROUTE default via {gateway}");
        let (family, bytes) = match gateway {
            IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec()),
        };
        // struct rtmsg: family, dst_len 0 (default), src_len, tos, table RT_TABLE_MAIN (254),
        // protocol RTPROT_BOOT (3), scope RT_SCOPE_UNIVERSE (0), type RTN_UNICAST (1), flags.
        let rtmsg: [u8; 12] = [family as u8, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0];
        let mut msg = MsgBuilder::new(
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        );
        msg.raw(&rtmsg).attr(RTA_GATEWAY, &bytes);
        self.request(&op, msg)
    }

    /// Adds an IPv4 or IPv6 address. IPv6 addresses skip duplicate address detection
    /// (`IFA_F_NODAD`) so they are usable immediately.
    ///
    /// # Errors
    /// `EINVAL` for a prefix longer than the address; the kernel's errno otherwise (`EEXIST`
    /// when the address is already there).
    pub fn addr_add(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let op = format!("RTM_NEWADDR {addr}/{prefix_len} on ifindex {ifindex}");
        let (family, bytes, max_prefix, flags) = match addr {
            IpAddr::V4(a) => (libc::AF_INET, a.octets().to_vec(), 32, 0),
            IpAddr::V6(a) => (libc::AF_INET6, a.octets().to_vec(), 128, IFA_F_NODAD),
        };
        if prefix_len > max_prefix {
            return Err(NetlinkError::invalid(&op, "prefix length too long"));
        }
        let info = IfAddrMsg {
            family: family as u8,
            prefix_len,
            flags,
            scope: 0, // RT_SCOPE_UNIVERSE
            index: ifindex,
        };
        let mut msg = MsgBuilder::new(
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        );
        msg.raw(&info.to_bytes())
            .attr(IFA_LOCAL, &bytes)
            .attr(IFA_ADDRESS, &bytes);
        self.request(&op, msg)
    }

    fn xdp_set(
        &mut self,
        op: &str,
        ifindex: u32,
        prog_fd: i32,
        flags: u32,
        expected_fd: Option<i32>,
    ) -> Result<(), NetlinkError> {
        let info = IfInfoMsg {
            index: ifindex_i32(op, ifindex)?,
            ..IfInfoMsg::default()
        };
        let mut msg = MsgBuilder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
        msg.raw(&info.to_bytes())
            .begin_nested(IFLA_XDP)
            .attr_i32(IFLA_XDP_FD, prog_fd)
            .attr_u32(IFLA_XDP_FLAGS, flags);
        if let Some(fd) = expected_fd {
            msg.attr_i32(IFLA_XDP_EXPECTED_FD, fd);
        }
        msg.end_nested();
        self.request(op, msg)
    }

    /// Attaches an XDP program through `IFLA_XDP`. Without `expected_prog_fd` the attach fails
    /// if any program is present (`XDP_FLAGS_UPDATE_IF_NOEXIST`); with it, the attached program
    /// is replaced atomically only if it is that one (`XDP_FLAGS_REPLACE`).
    ///
    /// # Errors
    /// The kernel's errno with its explanation: `EBUSY` when a program is present and none was
    /// expected, `EEXIST` when the present program is not the expected one, `EOPNOTSUPP` when
    /// the driver lacks native XDP.
    pub fn xdp_attach(
        &mut self,
        ifindex: u32,
        prog_fd: BorrowedFd<'_>,
        mode: XdpMode,
        expected_prog_fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), NetlinkError> {
        let op = format!("RTM_SETLINK IFLA_XDP ({mode}) on ifindex {ifindex}");
        let flags = mode.flag()
            | match expected_prog_fd {
                Some(_) => XDP_FLAGS_REPLACE,
                None => XDP_FLAGS_UPDATE_IF_NOEXIST,
            };
        let expected = expected_prog_fd.map(|fd| fd.as_raw_fd());
        self.xdp_set(&op, ifindex, prog_fd.as_raw_fd(), flags, expected)
    }

    /// Detaches the XDP program of `mode` (fd -1); with `expected_prog_fd`, only if it is the
    /// attached one. Detaching when nothing is attached succeeds.
    ///
    /// # Errors
    /// The kernel's errno (`EEXIST` when the attached program is not the expected one, `EBUSY`
    /// when it is held by a bpf_link).
    pub fn xdp_detach(
        &mut self,
        ifindex: u32,
        mode: XdpMode,
        expected_prog_fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), NetlinkError> {
        let op = format!("RTM_SETLINK IFLA_XDP detach ({mode}) on ifindex {ifindex}");
        let flags = mode.flag() | expected_prog_fd.map_or(0, |_| XDP_FLAGS_REPLACE);
        let expected = expected_prog_fd.map(|fd| fd.as_raw_fd());
        self.xdp_set(&op, ifindex, -1, flags, expected)
    }

    /// Reads the XDP state of an interface (`RTM_GETLINK`, `IFLA_XDP`).
    ///
    /// # Errors
    /// The kernel's errno (`ENODEV` when the interface does not exist), `EBADMSG` for a
    /// malformed reply.
    pub fn xdp_query(&mut self, ifindex: u32) -> Result<XdpState, NetlinkError> {
        let op = format!("RTM_GETLINK IFLA_XDP for ifindex {ifindex}");
        let info = IfInfoMsg {
            index: ifindex_i32(&op, ifindex)?,
            ..IfInfoMsg::default()
        };
        let Some(reply) = self.getlink(&op, info, None)? else {
            return Err(NetlinkError::new(op, libc::ENODEV));
        };
        reply
            .xdp_state()
            .map_err(|e| e.during(&op))
            .map(Option::unwrap_or_default)
    }

    fn clsact_msg(msg_type: u16, flags: u16, ifindex: i32) -> MsgBuilder {
        let info = TcMsg {
            ifindex,
            handle: tc_h_make(TC_H_CLSACT, 0),
            parent: TC_H_CLSACT,
            ..TcMsg::default()
        };
        let mut msg = MsgBuilder::new(msg_type, flags);
        // TCA_KIND also makes the kernel refuse to act on an `ingress` qdisc at the same handle.
        msg.raw(&info.to_bytes()).attr_str(TCA_KIND, "clsact");
        msg
    }

    /// Adds a clsact qdisc. Returns `true` if this call created it, `false` if a clsact qdisc
    /// was already there.
    ///
    /// # Errors
    /// The kernel's errno; `EEXIST` when another qdisc (e.g. `ingress`) holds the handle.
    pub fn clsact_add(&mut self, ifindex: u32) -> Result<bool, NetlinkError> {
        let op = format!("RTM_NEWQDISC clsact on ifindex {ifindex}");
        let index = ifindex_i32(&op, ifindex)?;
        let msg = Self::clsact_msg(
            RTM_NEWQDISC,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            index,
        );
        match self.request(&op, msg) {
            Ok(()) => Ok(true),
            Err(e) if e.errno == libc::EEXIST => {
                if self.clsact_exists(ifindex)? {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the interface has a clsact qdisc (`RTM_GETQDISC` dump).
    ///
    /// # Errors
    /// The kernel's errno, `EBADMSG` for a malformed reply.
    pub fn clsact_exists(&mut self, ifindex: u32) -> Result<bool, NetlinkError> {
        let op = format!("RTM_GETQDISC dump for ifindex {ifindex}");
        let info = TcMsg {
            ifindex: ifindex_i32(&op, ifindex)?,
            ..TcMsg::default()
        };
        let mut msg = MsgBuilder::new(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP);
        msg.raw(&info.to_bytes());
        let msgs = self.dump(&op, msg)?;
        // The kernel may dump every interface's qdiscs; filter here.
        Ok(msgs.iter().any(|m| {
            matches!(&m.body, MessageBody::Tc { info, .. } if info.ifindex as u32 == ifindex)
                && m.tc_kind().as_deref() == Some("clsact")
        }))
    }

    /// Deletes the clsact qdisc, and with it every filter on it.
    ///
    /// # Errors
    /// The kernel's errno (`ENOENT`/`EINVAL` when there is no clsact qdisc).
    pub fn clsact_del(&mut self, ifindex: u32) -> Result<(), NetlinkError> {
        let op = format!("RTM_DELQDISC clsact on ifindex {ifindex}");
        let index = ifindex_i32(&op, ifindex)?;
        let msg = Self::clsact_msg(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, index);
        self.request(&op, msg)
    }

    /// Attaches a SCHED_CLS program as a direct-action `cls_bpf` filter on a clsact hook.
    /// With `replace`, an existing filter at the same `prio`/`handle` gets the new program;
    /// without it, such a filter makes the call fail.
    ///
    /// # Errors
    /// `EINVAL` for `prio`/`handle` 0 or a bad name; the kernel's errno otherwise (`EEXIST`
    /// when the filter exists and `replace` is false, `EINVAL`/`ENOENT` without clsact).
    #[allow(clippy::too_many_arguments)] // mirrors the tc command line; a struct adds nothing
    pub fn cls_bpf_attach(
        &mut self,
        ifindex: u32,
        dir: TcDirection,
        prio: u16,
        handle: u32,
        prog_fd: BorrowedFd<'_>,
        name: &str,
        replace: bool,
    ) -> Result<(), NetlinkError> {
        let op = format!(
            "RTM_NEWTFILTER cls_bpf '{name}' {dir} prio {prio} handle {handle:#x} on ifindex {ifindex}"
        );
        // Zero would ask the kernel to pick one, and then we could not address the filter.
        if prio == 0 || handle == 0 {
            return Err(NetlinkError::invalid(
                &op,
                "prio and handle must be non-zero",
            ));
        }
        if name.len() > CLS_NAME_MAX || name.contains('\0') {
            return Err(NetlinkError::invalid(
                &op,
                "filter names are at most 255 bytes without NUL",
            ));
        }
        let info = TcMsg {
            ifindex: ifindex_i32(&op, ifindex)?,
            handle,
            parent: dir.parent(),
            info: filter_info(prio),
            ..TcMsg::default()
        };
        let mode = if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
        let mut msg = MsgBuilder::new(
            RTM_NEWTFILTER,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | mode,
        );
        msg.raw(&info.to_bytes())
            .attr_str(TCA_KIND, "bpf")
            .begin_nested(TCA_OPTIONS)
            .attr_u32(TCA_BPF_FD, prog_fd.as_raw_fd() as u32)
            .attr_str(TCA_BPF_NAME, name)
            .attr_u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT)
            .end_nested();
        self.request(&op, msg)
    }

    /// Lists the `cls_bpf` filters on a clsact hook (`RTM_GETTFILTER` dump). An interface
    /// without clsact has none.
    ///
    /// # Errors
    /// The kernel's errno, `EBADMSG` for a malformed reply.
    pub fn cls_bpf_list(
        &mut self,
        ifindex: u32,
        dir: TcDirection,
    ) -> Result<Vec<ClsBpfFilter>, NetlinkError> {
        let op = format!("RTM_GETTFILTER dump {dir} on ifindex {ifindex}");
        let info = TcMsg {
            ifindex: ifindex_i32(&op, ifindex)?,
            parent: dir.parent(),
            ..TcMsg::default()
        };
        let mut msg = MsgBuilder::new(RTM_GETTFILTER, NLM_F_REQUEST | NLM_F_DUMP);
        msg.raw(&info.to_bytes());
        let mut out = Vec::new();
        for m in self.dump(&op, msg)? {
            if !matches!(&m.body, MessageBody::Tc { info, .. } if info.ifindex as u32 == ifindex) {
                continue;
            }
            if let Some(f) = m.cls_bpf_filter().map_err(|e| e.during(&op))? {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Deletes one `cls_bpf` filter.
    ///
    /// # Errors
    /// The kernel's errno (`ENOENT` when there is no such filter).
    pub fn cls_bpf_detach(
        &mut self,
        ifindex: u32,
        dir: TcDirection,
        prio: u16,
        handle: u32,
    ) -> Result<(), NetlinkError> {
        let op = format!(
            "RTM_DELTFILTER cls_bpf {dir} prio {prio} handle {handle:#x} on ifindex {ifindex}"
        );
        let info = TcMsg {
            ifindex: ifindex_i32(&op, ifindex)?,
            handle,
            parent: dir.parent(),
            info: filter_info(prio),
            ..TcMsg::default()
        };
        let mut msg = MsgBuilder::new(RTM_DELTFILTER, NLM_F_REQUEST | NLM_F_ACK);
        msg.raw(&info.to_bytes()).attr_str(TCA_KIND, "bpf");
        self.request(&op, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        read_u16(b, at).unwrap()
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        read_u32(b, at).unwrap()
    }

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut m = MsgBuilder::new(RTM_GETLINK, NLM_F_REQUEST);
        m.attr(7, &[0xaa]).attr(8, &[1, 2, 3, 4, 5]).attr(9, &[]);
        let b = m.finish(42);
        // header 16 | attr 4+1 -> 8 | attr 4+5 -> 12 | attr 4
        assert_eq!(b.len(), 16 + 8 + 12 + 4);
        assert_eq!(u32_at(&b, 0) as usize, b.len());
        assert_eq!(u16_at(&b, 4), RTM_GETLINK);
        assert_eq!(u16_at(&b, 6), NLM_F_REQUEST);
        assert_eq!(u32_at(&b, 8), 42);
        assert_eq!(u16_at(&b, 16), 5, "nla_len excludes padding");
        assert_eq!(u16_at(&b, 18), 7);
        assert_eq!(&b[20..24], &[0xaa, 0, 0, 0]);
        assert_eq!(u16_at(&b, 24), 9);
        assert_eq!(&b[28..36], &[1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(u16_at(&b, 36), 4);
    }

    #[test]
    fn family_header_and_strings() {
        let mut m = MsgBuilder::new(RTM_NEWLINK, 0);
        let info = IfInfoMsg {
            index: 7,
            flags: 1,
            change: 1,
            ..IfInfoMsg::default()
        };
        m.raw(&info.to_bytes()).attr_str(IFLA_IFNAME, "veth0");
        let b = m.finish(1);
        assert_eq!(IfInfoMsg::parse(&b[16..]).unwrap(), info);
        assert_eq!(u16_at(&b, 32), 4 + 6, "string attribute carries its NUL");
        assert_eq!(&b[36..44], b"veth0\0\0\0");
        assert_eq!(b.len(), 44);
    }

    #[test]
    fn nests_cover_their_children() {
        let mut m = MsgBuilder::new(RTM_SETLINK, 0);
        m.raw(&IfInfoMsg::default().to_bytes())
            .begin_nested(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .begin_nested(IFLA_INFO_DATA)
            .attr_u32(99, 5)
            .end_nested()
            .attr(3, &[1]);
        // The outer nest is left open on purpose: finish() closes it.
        let b = m.finish(3);
        let outer = 32;
        assert_eq!(u16_at(&b, outer + 2), IFLA_LINKINFO | NLA_F_NESTED);
        // kind: 4 + 5 -> 12, inner nest: 4 + 8 = 12, attr 3: 4 + 1 -> 8. Like the kernel's
        // nla_nest_end, a nest's length includes its last child's padding.
        assert_eq!(u16_at(&b, outer) as usize, 4 + 12 + 12 + 8);
        assert_eq!(b.len(), outer + 4 + 12 + 12 + 8);
        let inner = outer + 4 + 12;
        assert_eq!(u16_at(&b, inner), 12);
        assert_eq!(u16_at(&b, inner + 2), IFLA_INFO_DATA | NLA_F_NESTED);

        let msgs = parse_replies(&b).unwrap();
        let MessageBody::Link { attrs, .. } = &msgs[0].body else {
            panic!("not a link message: {msgs:?}");
        };
        assert_eq!(attrs.len(), 1);
        assert!(attrs[0].nested_flag);
        let li = attrs[0].nested().unwrap();
        assert_eq!(li[0].as_string(), "veth");
        assert_eq!(li[1].kind, IFLA_INFO_DATA);
        assert_eq!(li[1].nested().unwrap()[0].as_u32(), Some(5));
        assert_eq!(li[2].as_u8(), Some(1));
    }

    #[test]
    fn veth_request_layout() {
        // The peer nest starts with a full ifinfomsg before its attributes.
        let mut m = MsgBuilder::new(RTM_NEWLINK, 0);
        m.begin_nested(VETH_INFO_PEER)
            .raw(&IfInfoMsg::default().to_bytes())
            .attr_str(IFLA_IFNAME, "p")
            .end_nested();
        let b = m.finish(0);
        assert_eq!(u16_at(&b, 16) as usize, 4 + 16 + 8);
        assert_eq!(u16_at(&b, 36), 6);
        assert_eq!(u16_at(&b, 38), IFLA_IFNAME);
    }

    #[test]
    fn filter_info_and_parents() {
        assert_eq!(filter_info(1), 0x0001_0000 | u32::from(0x0003u16.to_be()));
        assert_eq!(TcDirection::Ingress.parent(), 0xFFFF_FFF2);
        assert_eq!(TcDirection::Egress.parent(), 0xFFFF_FFF3);
        assert_eq!(tc_h_make(TC_H_CLSACT, 0), 0xFFFF_0000);
    }

    /// An NLMSG_ERROR as the kernel sends it with CAP_ACK + EXT_ACK.
    fn error_reply(seq: u32, errno: i32, msg: Option<&str>, capped: bool) -> Vec<u8> {
        let mut flags = 0;
        if capped {
            flags |= NLM_F_CAPPED;
        }
        if msg.is_some() {
            flags |= NLM_F_ACK_TLVS;
        }
        let mut m = MsgBuilder::new(NLMSG_ERROR, flags);
        m.raw(&(-errno).to_ne_bytes());
        // Echoed request: a 20-byte RTM_SETLINK header + payload (payload only when uncapped).
        let mut req = MsgBuilder::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
        req.raw(&[0x11; 3]);
        let req = req.finish(seq);
        if capped {
            m.raw(&req[..NLMSG_HDRLEN]);
        } else {
            m.raw(&req);
        }
        if let Some(text) = msg {
            m.attr_str(NLMSGERR_ATTR_MSG, text);
            m.attr_u32(NLMSGERR_ATTR_OFFS, 24);
        }
        m.finish(seq)
    }

    #[test]
    fn error_with_extack_capped_and_uncapped() {
        for capped in [true, false] {
            let b = error_reply(9, libc::EBUSY, Some("XDP program already attached"), capped);
            let msgs = parse_replies(&b).unwrap();
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].header.seq, 9);
            let MessageBody::Error(e) = &msgs[0].body else {
                panic!("{msgs:?}")
            };
            assert_eq!(e.errno, libc::EBUSY);
            assert_eq!(e.extack.as_deref(), Some("XDP program already attached"));
            assert_eq!(e.extack_offset, Some(24));
            assert_eq!(e.request.unwrap().msg_type, RTM_SETLINK);
        }
        let ack = error_reply(3, 0, None, true);
        let msgs = parse_replies(&ack).unwrap();
        assert!(
            matches!(&msgs[0].body, MessageBody::Error(e) if e.errno == 0 && e.extack.is_none())
        );
    }

    #[test]
    fn done_with_and_without_status() {
        let mut d = MsgBuilder::new(NLMSG_DONE, NLM_F_MULTI);
        d.raw(&0i32.to_ne_bytes());
        let mut b = d.finish(5);
        let mut old = MsgBuilder::new(NLMSG_DONE, NLM_F_MULTI).finish(5);
        b.append(&mut old);
        let mut bad = MsgBuilder::new(NLMSG_DONE, NLM_F_MULTI | NLM_F_ACK_TLVS);
        bad.raw(&(-libc::EOPNOTSUPP).to_ne_bytes())
            .attr_str(NLMSGERR_ATTR_MSG, "nope");
        b.append(&mut bad.finish(5));
        let msgs = parse_replies(&b).unwrap();
        assert_eq!(msgs.len(), 3);
        assert!(matches!(&msgs[0].body, MessageBody::Done(e) if e.errno == 0));
        assert!(matches!(&msgs[1].body, MessageBody::Done(e) if e.errno == 0));
        assert!(
            matches!(&msgs[2].body, MessageBody::Done(e) if e.errno == libc::EOPNOTSUPP && e.extack.as_deref() == Some("nope"))
        );
    }

    fn link_reply_with_xdp() -> Vec<u8> {
        let mut m = MsgBuilder::new(RTM_NEWLINK, 0);
        m.raw(
            &IfInfoMsg {
                index: 4,
                ..IfInfoMsg::default()
            }
            .to_bytes(),
        )
        .attr_str(IFLA_IFNAME, "veth7")
        .begin_nested(IFLA_XDP)
        .attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_DRV])
        .attr_u32(IFLA_XDP_DRV_PROG_ID, 77)
        .attr_u32(IFLA_XDP_PROG_ID, 77)
        .end_nested();
        m.finish(1)
    }

    fn filter_reply(handle: u32) -> Vec<u8> {
        let mut m = MsgBuilder::new(RTM_NEWTFILTER, NLM_F_MULTI);
        m.raw(
            &TcMsg {
                ifindex: 4,
                handle,
                parent: TcDirection::Ingress.parent(),
                info: filter_info(3),
                ..TcMsg::default()
            }
            .to_bytes(),
        )
        .attr_str(TCA_KIND, "bpf");
        if handle != 0 {
            m.begin_nested(TCA_OPTIONS)
                .attr_u32(TCA_BPF_ID, 12)
                .attr_str(TCA_BPF_NAME, "weir_in")
                .attr_u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT)
                .end_nested();
        }
        m.finish(2)
    }

    #[test]
    fn typed_accessors() {
        let msgs = parse_replies(&link_reply_with_xdp()).unwrap();
        assert_eq!(msgs[0].link_name().as_deref(), Some("veth7"));
        let st = msgs[0].xdp_state().unwrap().unwrap();
        assert_eq!(st.attached, XDP_ATTACHED_DRV);
        assert_eq!(st.prog_id, Some(77));
        assert_eq!(st.drv_prog_id, Some(77));
        assert_eq!(st.skb_prog_id, None);

        let mut b = filter_reply(0);
        b.extend(filter_reply(1));
        let msgs = parse_replies(&b).unwrap();
        assert_eq!(
            msgs[0].cls_bpf_filter().unwrap(),
            None,
            "per-prio entry skipped"
        );
        assert_eq!(
            msgs[1].cls_bpf_filter().unwrap(),
            Some(ClsBpfFilter {
                prio: 3,
                handle: 1,
                prog_id: Some(12),
                name: Some("weir_in".into()),
                direct_action: true,
            })
        );
        assert_eq!(msgs[1].tc_kind().as_deref(), Some("bpf"));
    }

    #[test]
    fn malformed_lengths_are_errors() {
        // Header shorter than 16 bytes.
        assert!(parse_replies(&[1, 2, 3]).is_err());
        let good = link_reply_with_xdp();
        // nlmsg_len below the header size, zero, and past the end.
        for len in [0u32, 15, good.len() as u32 + 1, u32::MAX] {
            let mut b = good.clone();
            b[0..4].copy_from_slice(&len.to_ne_bytes());
            let e = parse_replies(&b).unwrap_err();
            assert_eq!(e.errno, libc::EBADMSG);
            assert!(e.to_string().contains("decoding netlink reply"), "{e}");
        }
        // Attribute length past the end of the message.
        let mut b = good.clone();
        b[32..34].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_replies(&b).is_err());
        // Attribute length below its header.
        b[32..34].copy_from_slice(&2u16.to_ne_bytes());
        assert!(parse_replies(&b).is_err());
        // Empty input is zero messages.
        assert_eq!(parse_replies(&[]).unwrap(), Vec::new());
    }

    /// Feeds every accessor so the fuzz-style tests cover them too.
    fn exercise(buf: &[u8]) {
        if let Ok(msgs) = parse_replies(buf) {
            for m in &msgs {
                let _ = m.link_name();
                let _ = m.tc_kind();
                let _ = m.xdp_state();
                let _ = m.cls_bpf_filter();
                if let MessageBody::Link { attrs, .. }
                | MessageBody::Tc { attrs, .. }
                | MessageBody::Addr { attrs, .. } = &m.body
                {
                    for a in attrs {
                        if let Ok(inner) = a.nested() {
                            for i in inner {
                                let _ = (i.as_u8(), i.as_u32(), i.as_string(), i.nested());
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_handled() {
        let mut corpus = link_reply_with_xdp();
        corpus.extend(filter_reply(1));
        corpus.extend(error_reply(1, libc::EBUSY, Some("x"), true));
        corpus.extend(error_reply(1, libc::EINVAL, Some("y"), false));
        assert!(parse_replies(&corpus).is_ok());
        for end in 0..=corpus.len() {
            exercise(&corpus[..end]);
            exercise(&corpus[end..]);
        }
        for i in 0..corpus.len() {
            for bit in 0..8 {
                let mut b = corpus.clone();
                b[i] ^= 1 << bit;
                exercise(&b);
            }
            for v in [0u8, 0xff, 0x7f, 0x80, 4, 16] {
                let mut b = corpus.clone();
                b[i] = v;
                exercise(&b);
            }
        }
    }

    #[test]
    fn random_garbage_does_not_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Plausible headers reach deeper into the decoder than pure noise.
            if b.len() >= 16 && next() % 2 == 0 {
                let l = (next() % (b.len() as u64 + 1)) as u32;
                b[0..4].copy_from_slice(&l.to_ne_bytes());
                let ty = [
                    NLMSG_ERROR,
                    NLMSG_DONE,
                    RTM_NEWLINK,
                    RTM_NEWTFILTER,
                    RTM_NEWADDR,
                ][(next() % 5) as usize];
                b[4..6].copy_from_slice(&ty.to_ne_bytes());
            }
            exercise(&b);
        }
    }

    #[test]
    fn error_display() {
        let e = NetlinkError {
            op: "RTM_SETLINK IFLA_XDP on ifindex 7".into(),
            errno: libc::EBUSY,
            extack: Some("XDP program already attached".into()),
        };
        let s = e.to_string();
        assert!(s.starts_with("RTM_SETLINK IFLA_XDP on ifindex 7: "), "{s}");
        assert!(
            s.contains("(os error 16): kernel says: XDP program already attached"),
            "{s}"
        );
        assert_eq!(e.raw_os_error(), libc::EBUSY);
        let plain = NetlinkError::new("op", libc::ENODEV).to_string();
        assert!(plain.ends_with("(os error 19)"), "{plain}");
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::ResourceBusy);
    }

    #[test]
    fn invalid_inputs_rejected_before_sending() {
        assert!(check_ifname("op", "").is_err());
        assert!(check_ifname("op", "0123456789abcdef").is_err());
        assert!(check_ifname("op", "a\0b").is_err());
        assert!(check_ifname("op", "0123456789abcde").is_ok());
        assert_eq!(ifindex_i32("op", u32::MAX).unwrap_err().errno, libc::EINVAL);
    }
}
