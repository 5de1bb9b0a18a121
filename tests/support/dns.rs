//! A loopback UDP DNS responder for discovery tests: it answers SRV queries for the names it
//! was given and NXDOMAIN for everything else.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::SRV;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// One published SRV record: priority, weight, port, target host (fully qualified).
#[derive(Debug, Clone)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// A zone: SRV records by owner name (fully qualified, e.g. `_vlmcs._tcp.example.test.`).
pub type Zone = Vec<(String, Vec<Srv>)>;

/// A UDP responder on 127.0.0.1; the task ends when this is dropped.
#[derive(Debug)]
pub struct Responder {
    pub addr: SocketAddr,
    /// Every question's name as it came on the wire (case kept), in arrival order.
    pub asked: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Responder {
    /// Starts answering from `zone` on a fresh port.
    pub async fn start(zone: Zone) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
                if let Ok(m) = Message::from_vec(&buf[..len])
                    && let Some(q) = m.queries.first()
                {
                    log.lock().unwrap().push(q.name().to_string());
                }
                // An unparsable query gets no answer, as a real server drops it.
                if let Some(reply) = respond(&zone, &buf[..len]) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        Responder { addr, asked, task }
    }
}

fn respond(zone: &Zone, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries.first()?.clone();
    let mut response = Message::response(request.id, request.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    let owner = question.name();
    let found = zone
        .iter()
        .find(|(name, _)| Name::from_ascii(name).is_ok_and(|n| n == *owner));
    match found {
        Some((_, records)) if question.query_type() == RecordType::SRV => {
            response.add_answers(records.iter().map(|s| {
                let target = Name::from_ascii(&s.target).unwrap();
                let srv = SRV::new(s.priority, s.weight, s.port, target);
                Record::from_rdata(owner.clone(), 60, RData::SRV(srv))
            }));
        }
        // The name exists, without data of the asked type.
        Some(_) => {}
        None => response.metadata.response_code = ResponseCode::NXDomain,
    }
    response.to_vec().ok()
}
