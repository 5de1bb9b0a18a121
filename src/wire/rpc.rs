//! Connection-oriented DCE/RPC v5.0 PDUs (C706 chapter 12, with Microsoft's MS-RPCE extensions):
//! the common header, bind / alter_context and their acks, bind_nak, request, response, fault,
//! framing of a byte stream into PDUs, and the splitting of a call into fragments (their
//! reassembly is [`super::reassembly`]).

use core::fmt;

use super::Guid;
use super::codec::{Error, Put, Reader, Result, le16, le32};
use super::enums::wire_enum;

/// Length of the common header that starts every PDU.
pub const HEADER_LEN: usize = field::CALL_ID.end;
/// The only protocol major version of connection-oriented DCE/RPC (C706 12.6.3.1).
pub const RPC_VERSION: u8 = 5;
/// Data representation label: little-endian integers, ASCII characters, IEEE floats (C706 14.1).
/// Every Windows peer and every capture we hold uses it.
pub const DREP_LITTLE_ENDIAN: [u8; 4] = [0x10, 0, 0, 0];
/// Fragment sizes Windows clients offer in a bind (seen in every captured vlmcs bind and in a
/// genuine Windows 10 bind quoted in the shared captures README).
pub const WINDOWS_MAX_FRAG: u16 = 5840;

/// Byte ranges of the common header.
///
/// ```text
///  0       1       2       3       4               8        10       12              16
/// +-------+-------+-------+-------+---------------+--------+--------+---------------+
/// | rpc   | minor | ptype | flags | data repr.    |frag_len|auth_len| call_id       |
/// | vers  |       |       |       | (4 bytes)     |  u16   |  u16   |   u32         |
/// +-------+-------+-------+-------+---------------+--------+--------+---------------+
/// ```
mod field {
    use core::ops::Range;
    pub const VERSION: usize = 0;
    pub const VERSION_MINOR: usize = 1;
    pub const PTYPE: usize = 2;
    pub const FLAGS: usize = 3;
    pub const DREP: Range<usize> = 4..8;
    pub const FRAG_LEN: Range<usize> = 8..10;
    pub const AUTH_LEN: Range<usize> = 10..12;
    pub const CALL_ID: Range<usize> = 12..16;
}

/// Length of the security trailer that precedes an authentication value (C706 13.2.6.1).
const SEC_TRAILER_LEN: usize = 8;

wire_enum! {
    /// PDU type (C706 12.6.4).
    pub enum PacketType(u8) as "PDU type" {
        /// A call's input.
        Request = 0 => "request",
        /// A call's output.
        Response = 2 => "response",
        /// A call failed in the RPC runtime or the server stub.
        Fault = 3 => "fault",
        /// Proposes presentation contexts and opens an association.
        Bind = 11 => "bind",
        /// Accepts a bind.
        BindAck = 12 => "bind_ack",
        /// Rejects a bind as a whole.
        BindNak = 13 => "bind_nak",
        /// Proposes further presentation contexts on an open association.
        AlterContext = 14 => "alter_context",
        /// Answers an alter_context.
        AlterContextResp = 15 => "alter_context_resp",
        /// Server asks the client to close.
        Shutdown = 17 => "shutdown",
        /// Client cancels a call.
        CoCancel = 18 => "co_cancel",
        /// Client abandons a call.
        Orphaned = 19 => "orphaned",
    }
}

/// The `pfc_flags` byte of the common header (C706 12.6.3.1, MS-RPCE 2.2.2.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// First fragment of a call.
    pub const FIRST_FRAG: Flags = Flags(0x01);
    /// Last fragment of a call.
    pub const LAST_FRAG: Flags = Flags(0x02);
    /// A cancel was pending at the sender.
    pub const PENDING_CANCEL: Flags = Flags(0x04);
    /// Reserved; MS-RPCE uses it in binds as "supports header signing".
    pub const SUPPORT_HEADER_SIGN: Flags = Flags(0x08);
    /// Concurrent multiplexing of calls on one connection (PFC_CONC_MPX).
    pub const CONC_MPX: Flags = Flags(0x10);
    /// A fault was raised before the call executed.
    pub const DID_NOT_EXECUTE: Flags = Flags(0x20);
    /// "Maybe" call semantics.
    pub const MAYBE: Flags = Flags(0x40);
    /// An object UUID follows the request header.
    pub const OBJECT_UUID: Flags = Flags(0x80);
    /// A whole call in one PDU.
    pub const FIRST_LAST: Flags = Flags(0x03);

    const NAMES: [(u8, &'static str); 8] = [
        (0x01, "FIRST_FRAG"),
        (0x02, "LAST_FRAG"),
        (0x04, "PENDING_CANCEL"),
        (0x08, "SUPPORT_HEADER_SIGN"),
        (0x10, "CONC_MPX"),
        (0x20, "DID_NOT_EXECUTE"),
        (0x40, "MAYBE"),
        (0x80, "OBJECT_UUID"),
    ];

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with `other`'s bits set or cleared.
    #[must_use]
    pub const fn with(self, other: Flags, on: bool) -> Flags {
        if on {
            Flags(self.0 | other.0)
        } else {
            Flags(self.0 & !other.0)
        }
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02x}", self.0)?;
        let mut sep = " (";
        for (bit, name) in Flags::NAMES {
            if self.0 & bit != 0 {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        if sep == "|" {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A typed view of the common header over a buffer (smoltcp style): `new_checked` validates
/// the length once so that no accessor can panic afterwards.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    /// Wraps a buffer that holds at least a whole common header.
    pub fn new_checked(buffer: T) -> Result<Header<T>> {
        let header = Header::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    /// Fails unless the buffer holds a whole common header.
    pub fn check_len(&self) -> Result<()> {
        let have = self.buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(Error::Truncated {
                field: "RPC common header",
                offset: 0,
                need: HEADER_LEN,
                have,
            });
        }
        Ok(())
    }

    /// `rpc_vers`.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    /// `rpc_vers_minor`.
    pub fn version_minor(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_MINOR]
    }
    /// `PTYPE`.
    pub fn packet_type(&self) -> PacketType {
        PacketType::from(self.buffer.as_ref()[field::PTYPE])
    }
    /// `pfc_flags`.
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }
    /// `packed_drep`.
    pub fn data_representation(&self) -> [u8; 4] {
        let mut d = [0u8; 4];
        d.copy_from_slice(&self.buffer.as_ref()[field::DREP]);
        d
    }
    /// `frag_length`: the whole PDU, header included.
    pub fn frag_len(&self) -> u16 {
        le16(self.buffer.as_ref(), field::FRAG_LEN.start)
    }
    /// `auth_length`: the authentication value only, without its security trailer.
    pub fn auth_len(&self) -> u16 {
        le16(self.buffer.as_ref(), field::AUTH_LEN.start)
    }
    /// `call_id`.
    pub fn call_id(&self) -> u32 {
        le32(self.buffer.as_ref(), field::CALL_ID.start)
    }
}

/// The parsed common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    /// `rpc_vers_minor` (0 for v5.0; 1 for v5.1 peers).
    pub version_minor: u8,
    /// PDU type.
    pub packet_type: PacketType,
    /// `pfc_flags`.
    pub flags: Flags,
    /// Data representation label.
    pub drep: [u8; 4],
    /// Call identifier; a response echoes its request's.
    pub call_id: u32,
}

impl HeaderRepr {
    /// A single-fragment header of the given type with Windows' data representation.
    pub const fn new(packet_type: PacketType, call_id: u32) -> HeaderRepr {
        HeaderRepr {
            version_minor: 0,
            packet_type,
            flags: Flags::FIRST_LAST,
            drep: DREP_LITTLE_ENDIAN,
            call_id,
        }
    }
}

/// A presentation syntax identifier: a UUID and a 32-bit version (transfer syntaxes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyntaxId {
    /// Syntax UUID.
    pub uuid: Guid,
    /// Version; for an interface, major in the low 16 bits and minor in the high 16 bits.
    pub version: u32,
}

/// The KMS activation interface, 51c82175-844e-4750-b0d8-ec255555bc06 v1.0 (seen in every
/// captured bind; listed in vlmcsd's and py-kms' RPC code).
pub const KMS_INTERFACE: SyntaxId = SyntaxId {
    uuid: Guid::from_str_const("51c82175-844e-4750-b0d8-ec255555bc06"),
    version: 1,
};
/// NDR 2.0, the 32-bit transfer syntax (C706 appendix I).
pub const NDR32: SyntaxId = SyntaxId {
    uuid: Guid::from_str_const("8a885d04-1ceb-11c9-9fe8-08002b104860"),
    version: 2,
};
/// NDR64 (MS-RPCE 2.2.5).
pub const NDR64: SyntaxId = SyntaxId {
    uuid: Guid::from_str_const("71710533-beba-4937-8319-b5dbef9ccc36"),
    version: 1,
};
/// First eight bytes of every bind-time feature negotiation identifier (MS-RPCE 3.3.1.5.3):
/// the UUID is `6cb71c2c-9812-4540-XXXX-000000000000` with feature bits in place of `XXXX`.
pub const BTFN_PREFIX: [u8; 8] = [0x2c, 0x1c, 0xb7, 0x6c, 0x12, 0x98, 0x40, 0x45];
/// BTFN bit: security context multiplexing supported.
pub const BTFN_SECURITY_CONTEXT_MULTIPLEXING: u16 = 0x0001;
/// BTFN bit: keep the connection open when a call is orphaned.
pub const BTFN_KEEP_CONNECTION_ON_ORPHAN: u16 = 0x0002;

impl SyntaxId {
    /// A bind-time feature negotiation identifier offering `bits`, version 1 as Windows sends.
    pub fn btfn(bits: u16) -> SyntaxId {
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&BTFN_PREFIX);
        uuid[8..10].copy_from_slice(&bits.to_le_bytes());
        SyntaxId {
            uuid: Guid(uuid),
            version: 1,
        }
    }

    /// The offered feature bits, if this is a BTFN identifier.
    pub fn btfn_bits(&self) -> Option<u16> {
        let w = &self.uuid.0;
        (w[..8] == BTFN_PREFIX).then(|| u16::from_le_bytes([w[8], w[9]]))
    }

    /// A short name for the well-known syntaxes, for reports.
    pub fn name(&self) -> &'static str {
        if self.uuid == NDR32.uuid {
            "NDR32"
        } else if self.uuid == NDR64.uuid {
            "NDR64"
        } else if self.btfn_bits().is_some() {
            "BTFN"
        } else if self.uuid == KMS_INTERFACE.uuid {
            "KMS"
        } else if self.uuid == Guid::NIL {
            "null"
        } else {
            "unknown"
        }
    }

    fn parse(r: &mut Reader<'_>, field: &'static str) -> Result<SyntaxId> {
        Ok(SyntaxId {
            uuid: r.guid(field)?,
            version: r.u32(field)?,
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.put_guid(&self.uuid);
        out.put_u32(self.version);
    }
}

/// One presentation context proposed in a bind or alter_context (`p_cont_elem_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextItem {
    /// Context identifier the client will use in requests.
    pub context_id: u16,
    /// The reserved byte after the transfer syntax count, kept for exact re-encoding.
    pub reserved: u8,
    /// Interface (abstract syntax).
    pub abstract_syntax: SyntaxId,
    /// Transfer syntaxes offered for it, in preference order.
    pub transfer_syntaxes: Vec<SyntaxId>,
}

/// Body of a bind or alter_context PDU.
///
/// ```text
///  0          2          4               8       9      10       12
/// +----------+----------+---------------+-------+------+--------+----------------
/// | max_xmit | max_recv | assoc_group   | n_ctx | rsvd | rsvd2  | context items…
/// +----------+----------+---------------+-------+------+--------+----------------
/// item: context_id u16 | n_transfer u8 | rsvd u8 | abstract (uuid, u16 major, u16 minor)
///       | n_transfer × (uuid, u32 version)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Largest fragment the sender will transmit.
    pub max_xmit_frag: u16,
    /// Largest fragment the sender can receive.
    pub max_recv_frag: u16,
    /// Association group to join; 0 asks for a new one.
    pub assoc_group: u32,
    /// The two reserved fields after the item count, kept for exact re-encoding.
    pub reserved: [u8; 3],
    /// Proposed presentation contexts.
    pub contexts: Vec<ContextItem>,
}

impl Bind {
    fn parse(r: &mut Reader<'_>) -> Result<Bind> {
        let max_xmit_frag = r.u16("max_xmit_frag")?;
        let max_recv_frag = r.u16("max_recv_frag")?;
        let assoc_group = r.u32("assoc_group_id")?;
        let n = r.u8("n_context_elem")?;
        let reserved = r.array("reserved")?;
        let mut contexts = Vec::with_capacity(usize::from(n).min(8));
        for _ in 0..n {
            let context_id = r.u16("p_cont_id")?;
            let n_transfer = r.u8("n_transfer_syn")?;
            let reserved = r.u8("p_cont_elem reserved")?;
            let abstract_syntax = SyntaxId::parse(r, "abstract_syntax")?;
            let mut transfer_syntaxes = Vec::with_capacity(usize::from(n_transfer).min(4));
            for _ in 0..n_transfer {
                transfer_syntaxes.push(SyntaxId::parse(r, "transfer_syntax")?);
            }
            contexts.push(ContextItem {
                context_id,
                reserved,
                abstract_syntax,
                transfer_syntaxes,
            });
        }
        Ok(Bind {
            max_xmit_frag,
            max_recv_frag,
            assoc_group,
            reserved,
            contexts,
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.put_u16(self.max_xmit_frag);
        out.put_u16(self.max_recv_frag);
        out.put_u32(self.assoc_group);
        out.push(self.contexts.len() as u8);
        out.put(&self.reserved);
        for item in &self.contexts {
            out.put_u16(item.context_id);
            out.push(item.transfer_syntaxes.len() as u8);
            out.push(item.reserved);
            item.abstract_syntax.emit(out);
            for ts in &item.transfer_syntaxes {
                ts.emit(out);
            }
        }
    }
}

wire_enum! {
    /// Result of one presentation context in a bind_ack (C706 12.6.3.1 `p_cont_def_result_t`,
    /// MS-RPCE 2.2.2.4 for `negotiate_ack`).
    pub enum AckResult(u16) as "context result" {
        /// The context is accepted with the returned transfer syntax.
        Acceptance = 0 => "acceptance",
        /// Rejected by the server application.
        UserRejection = 1 => "user_rejection",
        /// Rejected by the RPC runtime; the reason says why.
        ProviderRejection = 2 => "provider_rejection",
        /// Answer to a bind-time feature negotiation item; the reason carries feature bits.
        NegotiateAck = 3 => "negotiate_ack",
    }
}

wire_enum! {
    /// Why a presentation context was rejected (C706 `p_provider_reason_t`).
    pub enum ProviderReason(u16) as "provider reason" {
        /// No reason given.
        NotSpecified = 0 => "not_specified",
        /// The interface is not supported.
        AbstractSyntaxNotSupported = 1 => "abstract_syntax_not_supported",
        /// None of the transfer syntaxes is supported.
        ProposedTransferSyntaxesNotSupported = 2 => "proposed_transfer_syntaxes_not_supported",
        /// Server limit reached.
        LocalLimitExceeded = 3 => "local_limit_exceeded",
    }
}

/// The answer to one proposed context (`p_result_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextResult {
    /// Accepted, rejected, or the BTFN answer.
    pub result: AckResult,
    /// Rejection reason, or for [`AckResult::NegotiateAck`] the accepted feature bits.
    pub reason: u16,
    /// The accepted transfer syntax; the nil syntax when rejected.
    pub transfer_syntax: SyntaxId,
}

impl ContextResult {
    /// The reason as a provider rejection reason.
    pub fn provider_reason(&self) -> ProviderReason {
        ProviderReason::from(self.reason)
    }
}

/// Body of a bind_ack or alter_context_resp PDU.
///
/// ```text
///  0          2          4               8           10
/// +----------+----------+---------------+-----------+-------------------+-----+
/// | max_xmit | max_recv | assoc_group   | sec_addr  | secondary address | pad | …
/// |          |          |               | length    | (length bytes)    | →4  |
/// +----------+----------+---------------+-----------+-------------------+-----+
/// … n_results u8 | rsvd u8 | rsvd2 u16 | n_results × (result u16, reason u16, uuid, u32)
/// ```
/// The pad aligns the result list to 4 bytes from the start of the PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindAck<'a> {
    /// Largest fragment the server will transmit.
    pub max_xmit_frag: u16,
    /// Largest fragment the server can receive.
    pub max_recv_frag: u16,
    /// The association group this connection joined.
    pub assoc_group: u32,
    /// Secondary address (the server's port as a NUL-terminated decimal string), may be empty.
    pub secondary_address: &'a [u8],
    /// The alignment bytes after the secondary address (Windows leaves them uninitialised).
    pub pad: &'a [u8],
    /// The reserved bytes after the result count.
    pub reserved: [u8; 3],
    /// One result per proposed context, in order.
    pub results: Vec<ContextResult>,
}

impl<'a> BindAck<'a> {
    fn parse(r: &mut Reader<'a>) -> Result<BindAck<'a>> {
        let max_xmit_frag = r.u16("max_xmit_frag")?;
        let max_recv_frag = r.u16("max_recv_frag")?;
        let assoc_group = r.u32("assoc_group_id")?;
        let sec_len = r.u16("sec_addr length")?;
        let secondary_address = r.take(usize::from(sec_len), "sec_addr")?;
        // Positions are relative to the body; the PDU header before it is 16 bytes, a multiple
        // of 4, so aligning the body offset aligns the PDU offset too.
        let pad = r.take(super::codec::pad_to(r.position(), 4), "sec_addr pad")?;
        let n = r.u8("n_results")?;
        let reserved = r.array("reserved")?;
        let mut results = Vec::with_capacity(usize::from(n).min(8));
        for _ in 0..n {
            results.push(ContextResult {
                result: AckResult::from(r.u16("result")?),
                reason: r.u16("reason")?,
                transfer_syntax: SyntaxId::parse(r, "transfer_syntax")?,
            });
        }
        Ok(BindAck {
            max_xmit_frag,
            max_recv_frag,
            assoc_group,
            secondary_address,
            pad,
            reserved,
            results,
        })
    }

    fn emit(&self, out: &mut Vec<u8>, body_start: usize) {
        out.put_u16(self.max_xmit_frag);
        out.put_u16(self.max_recv_frag);
        out.put_u32(self.assoc_group);
        out.put_u16(self.secondary_address.len() as u16);
        out.put(self.secondary_address);
        let need = super::codec::pad_to(out.len() - body_start, 4);
        // Keep the captured pad bytes when they fit the alignment; otherwise write zeros.
        if self.pad.len() == need {
            out.put(self.pad);
        } else {
            out.resize(out.len() + need, 0);
        }
        out.push(self.results.len() as u8);
        out.put(&self.reserved);
        for res in &self.results {
            out.put_u16(res.result.into());
            out.put_u16(res.reason);
            res.transfer_syntax.emit(out);
        }
    }
}

wire_enum! {
    /// Why a bind was rejected as a whole (C706 `p_reject_reason_t`, MS-RPCE 2.2.2.5).
    pub enum RejectReason(u16) as "bind_nak reason" {
        /// No reason given.
        NotSpecified = 0 => "not_specified",
        /// Server congested.
        TemporaryCongestion = 1 => "temporary_congestion",
        /// Server limit reached.
        LocalLimitExceeded = 2 => "local_limit_exceeded",
        /// Called address unknown.
        CalledPaddrUnknown = 3 => "called_paddr_unknown",
        /// The proposed RPC protocol version is not supported.
        ProtocolVersionNotSupported = 4 => "protocol_version_not_supported",
        /// Default context not supported.
        DefaultContextNotSupported = 5 => "default_context_not_supported",
        /// User data not readable.
        UserDataNotReadable = 6 => "user_data_not_readable",
        /// No presentation service access point available.
        NoPsapAvailable = 7 => "no_psap_available",
        /// Authentication type not recognised (MS-RPCE).
        AuthenticationTypeNotRecognized = 8 => "authentication_type_not_recognized",
        /// Invalid checksum (MS-RPCE).
        InvalidChecksum = 9 => "invalid_checksum",
    }
}

/// Body of a bind_nak PDU: a reason and the protocol versions the server supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindNak<'a> {
    /// Why the bind was rejected.
    pub reason: RejectReason,
    /// Supported (major, minor) protocol versions.
    pub versions: Vec<(u8, u8)>,
    /// Anything after the version list (MS-RPCE may add a signature), kept verbatim.
    pub rest: &'a [u8],
    /// The body ended after the reason, with no version count: what some stacks send. A
    /// count of zero is not the same bytes, so re-encoding keeps the difference.
    pub bare: bool,
}

impl<'a> BindNak<'a> {
    fn parse(r: &mut Reader<'a>) -> Result<BindNak<'a>> {
        let reason = RejectReason::from(r.u16("provider_reject_reason")?);
        // A bare reason (two bytes) is what some stacks send; the version list is optional.
        let mut versions = Vec::new();
        let bare = r.remaining() == 0;
        if !bare {
            let n = r.u8("n_protocols")?;
            for _ in 0..n {
                versions.push((r.u8("rpc_vers")?, r.u8("rpc_vers_minor")?));
            }
        }
        Ok(BindNak {
            reason,
            versions,
            rest: r.rest(),
            bare,
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.put_u16(self.reason.into());
        if !self.bare {
            out.push(self.versions.len() as u8);
            for (major, minor) in &self.versions {
                out.push(*major);
                out.push(*minor);
            }
            out.put(self.rest);
        }
    }
}

/// Body of a request PDU.
///
/// ```text
///  0              4            6        8 (24 with object UUID)
/// +--------------+------------+--------+--------------------+------------
/// | alloc_hint   | context_id | opnum  | [object uuid]      | stub data…
/// +--------------+------------+--------+--------------------+------------
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The sender's estimate of the whole call's stub size.
    pub alloc_hint: u32,
    /// Presentation context the stub is encoded in.
    pub context_id: u16,
    /// Operation number; the KMS activation call is 0.
    pub opnum: u16,
    /// Object UUID, present when the OBJECT_UUID flag is set.
    pub object: Option<Guid>,
    /// This fragment's stub data.
    pub stub: &'a [u8],
}

/// Body of a response PDU.
///
/// ```text
///  0              4            6         7        8
/// +--------------+------------+---------+--------+------------
/// | alloc_hint   | context_id | cancel  | rsvd   | stub data…
/// +--------------+------------+---------+--------+------------
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The sender's estimate of the whole call's stub size.
    pub alloc_hint: u32,
    /// Presentation context of the request.
    pub context_id: u16,
    /// Cancels the server saw.
    pub cancel_count: u8,
    /// Reserved byte.
    pub reserved: u8,
    /// This fragment's stub data.
    pub stub: &'a [u8],
}

wire_enum! {
    /// Fault status codes (C706 appendix E, MS-RPCE 2.2.2.9).
    pub enum FaultStatus(u32) as "fault status code" {
        /// Integer division by zero in the server.
        IntDivByZero = 0x1C00_0001 => "int_div_by_zero",
        /// Address error in the server.
        AddrError = 0x1C00_0002 => "addr_error",
        /// Context handle mismatch.
        ContextMismatch = 0x1C00_001A => "context_mismatch",
        /// Server out of memory.
        RemoteNoMemory = 0x1C00_001B => "remote_no_memory",
        /// Communication failure.
        CommFailure = 0x1C01_0001 => "comm_failure",
        /// Operation number out of range for the interface.
        OpRangeError = 0x1C01_0002 => "op_range_error",
        /// Unknown interface or presentation context.
        UnknownInterface = 0x1C01_0003 => "unknown_interface",
        /// Wrong boot time.
        WrongBootTime = 0x1C01_0006 => "wrong_boot_time",
        /// Server restarted.
        YouCrashed = 0x1C01_0009 => "you_crashed",
        /// Protocol error.
        ProtocolError = 0x1C01_000B => "protocol_error",
        /// Output arguments too large.
        OutArgsTooBig = 0x1C01_0013 => "out_args_too_big",
        /// Server too busy.
        ServerTooBusy = 0x1C01_0014 => "server_too_busy",
        /// Unsupported type.
        UnsupportedType = 0x1C01_0017 => "unsupported_type",
        /// Access denied.
        AccessDenied = 0x0000_0005 => "access_denied",
        /// The stub data could not be unmarshalled (RPC_X_BAD_STUB_DATA, nca_s_fault_ndr).
        BadStubData = 0x0000_06F7 => "bad_stub_data",
        /// The call was cancelled.
        CallCancelled = 0x0000_071A => "call_cancelled",
        /// Call failed, did not execute.
        CallFailedDne = 0x0000_06BF => "call_failed_dne",
    }
}

/// Body of a fault PDU.
///
/// ```text
///  0              4            6         7        8              12             16
/// +--------------+------------+---------+--------+--------------+--------------+-------
/// | alloc_hint   | context_id | cancel  | rsvd   | status       | reserved     | stub…
/// +--------------+------------+---------+--------+--------------+--------------+-------
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault<'a> {
    /// Allocation hint.
    pub alloc_hint: u32,
    /// Presentation context of the failed call.
    pub context_id: u16,
    /// Cancels the server saw.
    pub cancel_count: u8,
    /// Reserved byte.
    pub reserved: u8,
    /// Why the call failed.
    pub status: FaultStatus,
    /// Reserved word after the status (MS-RPCE: extended error flags); some stacks omit it.
    pub reserved2: Option<u32>,
    /// Optional stub data.
    pub stub: &'a [u8],
}

/// The body of a PDU, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    /// `bind`.
    Bind(Bind),
    /// `bind_ack`.
    BindAck(BindAck<'a>),
    /// `bind_nak`.
    BindNak(BindNak<'a>),
    /// `alter_context` (same layout as bind).
    AlterContext(Bind),
    /// `alter_context_resp` (same layout as bind_ack).
    AlterContextResp(BindAck<'a>),
    /// `request`.
    Request(Request<'a>),
    /// `response`.
    Response(Response<'a>),
    /// `fault`.
    Fault(Fault<'a>),
    /// Any other type, kept as raw bytes.
    Other(&'a [u8]),
}

/// A parsed PDU: header, body and (rarely, never for KMS) an authentication trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu<'a> {
    /// The common header.
    pub header: HeaderRepr,
    /// The type-specific body.
    pub body: Body<'a>,
    /// Security trailer and authentication value, verbatim (empty when `auth_len` is 0).
    pub auth: &'a [u8],
}

impl<'a> Pdu<'a> {
    /// Parses exactly one PDU; `buf` must be exactly `frag_len` bytes (see [`frame_len`]).
    pub fn parse(buf: &'a [u8]) -> Result<Pdu<'a>> {
        let h = Header::new_checked(buf)?;
        check_version(&h)?;
        let frag_len = usize::from(h.frag_len());
        if frag_len != buf.len() {
            return Err(Error::invalid(
                "frag_length",
                field::FRAG_LEN.start,
                format!("says {frag_len} bytes but the PDU has {}", buf.len()),
            ));
        }
        let drep = h.data_representation();
        if drep[0] & 0xf0 != DREP_LITTLE_ENDIAN[0] {
            return Err(Error::invalid(
                "packed_drep",
                field::DREP.start,
                format!(
                    "integer representation 0x{:02x} (big-endian) is not supported",
                    drep[0]
                ),
            ));
        }
        let auth_len = usize::from(h.auth_len());
        let trailer = if auth_len == 0 {
            0
        } else {
            auth_len + SEC_TRAILER_LEN
        };
        if HEADER_LEN + trailer > buf.len() {
            return Err(Error::invalid(
                "auth_length",
                field::AUTH_LEN.start,
                format!("{auth_len} does not fit a {}-byte PDU", buf.len()),
            ));
        }
        let body_end = buf.len() - trailer;
        let body_bytes = &buf[HEADER_LEN..body_end];
        let auth = &buf[body_end..];
        let header = HeaderRepr {
            version_minor: h.version_minor(),
            packet_type: h.packet_type(),
            flags: h.flags(),
            drep,
            call_id: h.call_id(),
        };
        let body = parse_body(header, body_bytes).map_err(|e| e.at(HEADER_LEN))?;
        Ok(Pdu { header, body, auth })
    }

    /// Appends the encoded PDU to `out`, computing `frag_length` and `auth_length`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(RPC_VERSION);
        out.push(self.header.version_minor);
        out.push(self.header.packet_type.into());
        out.push(self.header.flags.0);
        out.put(&self.header.drep);
        out.put_u16(0); // frag_length, patched below
        let auth_len = self.auth.len().saturating_sub(SEC_TRAILER_LEN) as u16;
        out.put_u16(auth_len);
        out.put_u32(self.header.call_id);
        let body_start = out.len();
        match &self.body {
            Body::Bind(b) | Body::AlterContext(b) => b.emit(out),
            Body::BindAck(b) | Body::AlterContextResp(b) => b.emit(out, body_start),
            Body::BindNak(b) => b.emit(out),
            Body::Request(r) => {
                out.put_u32(r.alloc_hint);
                out.put_u16(r.context_id);
                out.put_u16(r.opnum);
                if let Some(obj) = &r.object {
                    out.put_guid(obj);
                }
                out.put(r.stub);
            }
            Body::Response(r) => {
                out.put_u32(r.alloc_hint);
                out.put_u16(r.context_id);
                out.push(r.cancel_count);
                out.push(r.reserved);
                out.put(r.stub);
            }
            Body::Fault(f) => {
                out.put_u32(f.alloc_hint);
                out.put_u16(f.context_id);
                out.push(f.cancel_count);
                out.push(f.reserved);
                out.put_u32(f.status.into());
                if let Some(r2) = f.reserved2 {
                    out.put_u32(r2);
                }
                out.put(f.stub);
            }
            Body::Other(raw) => out.put(raw),
        }
        out.put(self.auth);
        let frag_len = (out.len() - start) as u16;
        out[start + field::FRAG_LEN.start..start + field::FRAG_LEN.end]
            .copy_from_slice(&frag_len.to_le_bytes());
    }
}

fn check_version<T: AsRef<[u8]>>(h: &Header<T>) -> Result<()> {
    if h.version() != RPC_VERSION {
        return Err(Error::invalid(
            "rpc_vers",
            field::VERSION,
            format!(
                "version {}.{} is not connection-oriented DCE/RPC 5.x",
                h.version(),
                h.version_minor()
            ),
        ));
    }
    if usize::from(h.frag_len()) < HEADER_LEN {
        return Err(Error::invalid(
            "frag_length",
            field::FRAG_LEN.start,
            format!("{} is shorter than the 16-byte header", h.frag_len()),
        ));
    }
    Ok(())
}

fn parse_body<'a>(header: HeaderRepr, bytes: &'a [u8]) -> Result<Body<'a>> {
    let mut r = Reader::new(bytes);
    let body = match header.packet_type {
        PacketType::Bind => Body::Bind(Bind::parse(&mut r)?),
        PacketType::AlterContext => Body::AlterContext(Bind::parse(&mut r)?),
        PacketType::BindAck => Body::BindAck(BindAck::parse(&mut r)?),
        PacketType::AlterContextResp => Body::AlterContextResp(BindAck::parse(&mut r)?),
        PacketType::BindNak => Body::BindNak(BindNak::parse(&mut r)?),
        PacketType::Request => {
            let alloc_hint = r.u32("alloc_hint")?;
            let context_id = r.u16("p_cont_id")?;
            let opnum = r.u16("opnum")?;
            let object = if header.flags.contains(Flags::OBJECT_UUID) {
                Some(r.guid("object")?)
            } else {
                None
            };
            Body::Request(Request {
                alloc_hint,
                context_id,
                opnum,
                object,
                stub: r.rest(),
            })
        }
        PacketType::Response => Body::Response(Response {
            alloc_hint: r.u32("alloc_hint")?,
            context_id: r.u16("p_cont_id")?,
            cancel_count: r.u8("cancel_count")?,
            reserved: r.u8("reserved")?,
            stub: r.rest(),
        }),
        PacketType::Fault => Body::Fault(Fault {
            alloc_hint: r.u32("alloc_hint")?,
            context_id: r.u16("p_cont_id")?,
            cancel_count: r.u8("cancel_count")?,
            reserved: r.u8("reserved")?,
            status: FaultStatus::from(r.u32("status")?),
            // Some stacks end the fault after the status; treat the reserved word as optional.
            reserved2: if r.remaining() >= 4 {
                Some(r.u32("reserved")?)
            } else {
                None
            },
            stub: r.rest(),
        }),
        _ => Body::Other(r.rest()),
    };
    r.finish(pdu_name(header.packet_type))?;
    Ok(body)
}

/// The C706 name of a PDU type, for messages (`unknown PDU` for a type without one).
pub fn pdu_name(t: PacketType) -> &'static str {
    t.name().unwrap_or("unknown PDU")
}

/// How many bytes the PDU at the start of `buf` occupies, once its header has arrived.
///
/// `Ok(None)` means fewer than 16 bytes are buffered. An error means the stream is not
/// DCE/RPC (or is corrupt) and cannot be framed further.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>> {
    let h = Header::new_unchecked(buf);
    if h.check_len().is_err() {
        return Ok(None);
    }
    check_version(&h)?;
    Ok(Some(usize::from(h.frag_len())))
}

/// Splits the first whole PDU off a stream buffer: `Ok(Some((pdu, rest)))`, or `Ok(None)` when
/// more bytes are needed.
pub fn split_pdu(buf: &[u8]) -> Result<Option<(&[u8], &[u8])>> {
    match frame_len(buf)? {
        Some(len) if len <= buf.len() => Ok(Some(buf.split_at(len))),
        _ => Ok(None),
    }
}

/// Splits `stub` into request fragments of at most `max_frag` bytes each (header included),
/// appending the encoded PDUs to `out`. Used to exercise hosts' reassembly.
pub fn emit_fragmented_request(
    out: &mut Vec<u8>,
    call_id: u32,
    flags: Flags,
    context_id: u16,
    opnum: u16,
    stub: &[u8],
    max_frag: usize,
) {
    const REQUEST_HEADER: usize = HEADER_LEN + 8;
    let chunk = max_frag.saturating_sub(REQUEST_HEADER).max(1);
    let count = stub.len().div_ceil(chunk).max(1);
    for i in 0..count {
        let part = &stub[(i * chunk).min(stub.len())..((i + 1) * chunk).min(stub.len())];
        let f = flags
            .with(Flags::FIRST_FRAG, i == 0)
            .with(Flags::LAST_FRAG, i + 1 == count);
        Pdu {
            header: HeaderRepr {
                flags: f,
                ..HeaderRepr::new(PacketType::Request, call_id)
            },
            body: Body::Request(Request {
                alloc_hint: (stub.len() - i * chunk).min(u32::MAX as usize) as u32,
                context_id,
                opnum,
                object: None,
                stub: part,
            }),
            auth: &[],
        }
        .emit(out);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// vlmcs's bind as captured against py-kms (vlmcs-pykms-v6.server.log): identical to a
    /// genuine Windows 10 bind according to the shared captures README.
    static BIND_BYTES: [u8; 160] = hex_lit(
        "05000b1310000000a000000002000000d016d0160000000003000000000001007521c8514e845047b0d8ec255555bc060100\
         0000045d888aeb1cc9119fe808002b10486002000000010001007521c8514e845047b0d8ec255555bc060100000033057171\
         babe37498319b5dbef9ccc3601000000020001007521c8514e845047b0d8ec255555bc06010000002c1cb76c129840450300\
         00000000000001000000",
    );

    const fn hex_lit<const N: usize>(s: &str) -> [u8; N] {
        let b = s.as_bytes();
        let mut out = [0u8; N];
        let mut i = 0;
        let mut j = 0;
        while i < b.len() {
            let c = b[i];
            if c == b' ' || c == b'\n' {
                i += 1;
                continue;
            }
            let hi = match c {
                b'0'..=b'9' => c - b'0',
                _ => c - b'a' + 10,
            };
            let c2 = b[i + 1];
            let lo = match c2 {
                b'0'..=b'9' => c2 - b'0',
                _ => c2 - b'a' + 10,
            };
            out[j] = hi << 4 | lo;
            j += 1;
            i += 2;
        }
        assert!(j == N);
        out
    }

    #[test]
    fn test_parse() {
        let pdu = Pdu::parse(&BIND_BYTES).unwrap();
        assert_eq!(pdu.header.packet_type, PacketType::Bind);
        assert_eq!(pdu.header.flags, Flags(0x13));
        assert_eq!(pdu.header.call_id, 2);
        let Body::Bind(b) = &pdu.body else {
            panic!("not a bind")
        };
        assert_eq!(b.max_xmit_frag, WINDOWS_MAX_FRAG);
        assert_eq!(b.contexts.len(), 3);
        assert_eq!(b.contexts[0].abstract_syntax, KMS_INTERFACE);
        assert_eq!(b.contexts[0].transfer_syntaxes, vec![NDR32]);
        assert_eq!(b.contexts[1].transfer_syntaxes, vec![NDR64]);
        assert_eq!(b.contexts[2].transfer_syntaxes[0].btfn_bits(), Some(3));
        assert_eq!(b.contexts[2].transfer_syntaxes[0], SyntaxId::btfn(3));
    }

    #[test]
    fn test_emit() {
        let pdu = Pdu::parse(&BIND_BYTES).unwrap();
        let mut out = Vec::new();
        pdu.emit(&mut out);
        assert_eq!(out, BIND_BYTES);
    }

    #[test]
    fn test_impossible_len() {
        for len in 0..BIND_BYTES.len() {
            assert!(Pdu::parse(&BIND_BYTES[..len]).is_err(), "prefix {len}");
        }
        let mut lying = BIND_BYTES;
        lying[8] = 0xff;
        assert_eq!(Pdu::parse(&lying).unwrap_err().field(), "frag_length");
        let mut tiny = BIND_BYTES;
        tiny[8] = 4;
        tiny[9] = 0;
        assert!(frame_len(&tiny).is_err());
    }

    /// Every name a wire enum prints is snake_case (`op_range_error`), as the vectors and
    /// reports spell them: no Rust variant name (`OpRangeError`) reaches an output.
    #[test]
    fn test_names_are_snake_case() {
        let snake = |n: &str| {
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let names = (FaultStatus::ALL.iter().map(|v| v.name()))
            .chain(RejectReason::ALL.iter().map(|v| v.name()))
            .chain(PacketType::ALL.iter().map(|v| v.name()))
            .chain(AckResult::ALL.iter().map(|v| v.name()))
            .chain(ProviderReason::ALL.iter().map(|v| v.name()));
        for name in names {
            let name = name.expect("every listed value has a name");
            assert!(snake(name), "{name}");
        }
    }

    #[test]
    fn test_flags_debug() {
        assert_eq!(
            format!("{:?}", Flags(0x13)),
            "0x13 (FIRST_FRAG|LAST_FRAG|CONC_MPX)"
        );
        assert_eq!(format!("{:?}", Flags(0)), "0x00");
    }

    /// The names reports, vectors and load error classes already use.
    #[test]
    fn test_names() {
        assert_eq!(PacketType::BindAck.to_string(), "bind_ack");
        assert_eq!(pdu_name(PacketType::Unknown(42)), "unknown PDU");
        assert_eq!(PacketType::Unknown(42).to_string(), "0x2A");
        assert_eq!(
            format!("{:#}", FaultStatus::OpRangeError),
            "op_range_error (0x1C010002)"
        );
        assert_eq!(FaultStatus::Unknown(0x1C01_00FF).to_string(), "0x1C0100FF");
        assert_eq!("op_range_error".parse(), Ok(FaultStatus::OpRangeError));
        assert_eq!(
            "unknown_interface".parse(),
            Ok(FaultStatus::UnknownInterface)
        );
        assert_eq!(
            "protocol_version_not_supported".parse(),
            Ok(RejectReason::ProtocolVersionNotSupported)
        );
        assert_eq!(
            ProviderReason::ProposedTransferSyntaxesNotSupported.name(),
            Some("proposed_transfer_syntaxes_not_supported")
        );
        assert_eq!(AckResult::NegotiateAck.to_string(), "negotiate_ack");
        for (i, a) in FaultStatus::ALL.iter().enumerate() {
            for b in &FaultStatus::ALL[i + 1..] {
                assert!(!crate::wire::enums::same_name(
                    a.name().unwrap(),
                    b.name().unwrap()
                ));
            }
        }
    }

    /// Found by the rpc_pdu fuzz target (issue 11 §2): a bind_nak whose version count is zero
    /// and ends the body re-encoded as a bare reason, one byte short.
    #[test]
    fn test_bind_nak_zero_count_and_bare_reason_round_trip() {
        for body in [&[1u8, 0][..], &[1, 0, 0], &[1, 0, 1, 5, 0], &[1, 0, 0, 9]] {
            let mut bytes = vec![5, 0, 13, 3, 0x10, 0, 0, 0];
            bytes.extend_from_slice(&(16 + body.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&[0, 0, 7, 0, 0, 0]);
            bytes.extend_from_slice(body);
            let pdu = Pdu::parse(&bytes).unwrap();
            let mut out = Vec::new();
            pdu.emit(&mut out);
            assert_eq!(out, bytes, "body {body:?}");
        }
    }
}
